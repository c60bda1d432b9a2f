"""The `image` generator: renders a PNG with Pillow and keeps it as the job's artifact."""

from __future__ import annotations

import hashlib
import io

from PIL import Image, ImageDraw, ImageFont

from app.generators.base import Context, Output

MAX_SIDE = 2048
_COLOUR = {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"}
_SHAPE = {
    "type": "object",
    "properties": {
        "type": {"enum": ["rectangle", "ellipse", "line"]},
        # Two corners (x0, y0, x1, y1) in pixels; Pillow clips what lies outside the image.
        "xy": {
            "type": "array",
            "items": {"type": "integer", "minimum": -MAX_SIDE, "maximum": 2 * MAX_SIDE},
            "minItems": 4,
            "maxItems": 4,
        },
        "fill": _COLOUR,
        "outline": _COLOUR,
        "width": {"type": "integer", "minimum": 1, "maximum": 64},
    },
    "required": ["type", "xy"],
    "additionalProperties": False,
}
# Progress is reported after the background, every this many shapes, and after the text.
PROGRESS_EVERY = 10


class ImageGenerator:
    """Draws a background, shapes and a line of text, and completes with the PNG."""

    name = "image"
    params_schema = {
        "type": "object",
        "properties": {
            "width": {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
            "height": {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
            "background": _COLOUR,
            "text": {"type": "string", "maxLength": 500},
            "text_color": _COLOUR,
            "font_size": {"type": "integer", "minimum": 4, "maximum": 512},
            "shapes": {"type": "array", "items": _SHAPE, "maxItems": 200},
        },
        "required": ["width", "height"],
        "additionalProperties": False,
    }

    def run(self, params: dict, ctx: Context) -> Output:
        size = (params["width"], params["height"])
        image = Image.new("RGB", size, params.get("background", "#ffffff"))
        draw = ImageDraw.Draw(image)
        shapes = params.get("shapes", [])
        ctx.progress(0.1, "background")
        for n, shape in enumerate(shapes, start=1):
            _draw_shape(draw, shape)
            if n % PROGRESS_EVERY == 0 or n == len(shapes):
                ctx.progress(0.1 + 0.6 * n / len(shapes), f"shape {n}/{len(shapes)}")
        if params.get("text"):
            font = ImageFont.load_default(size=params.get("font_size", 32))
            draw.text(
                (size[0] / 2, size[1] / 2),
                params["text"],
                fill=params.get("text_color", "#000000"),
                font=font,
                anchor="mm",
            )
            ctx.progress(0.8, "text")
        buf = io.BytesIO()
        image.save(buf, format="PNG", optimize=False)
        body = buf.getvalue()
        result = {
            "width": size[0],
            "height": size[1],
            "format": "png",
            "bytes": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
        return Output(result=result, artifact=("image/png", body))


def _draw_shape(draw: ImageDraw.ImageDraw, shape: dict) -> None:
    x0, y0, x1, y1 = shape["xy"]
    # Pillow wants x0 <= x1 and y0 <= y1 for boxes; the params may name corners either way.
    box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    width = shape.get("width", 1)
    if shape["type"] == "line":
        draw.line((x0, y0, x1, y1), fill=shape.get("fill", "#000000"), width=width)
    elif shape["type"] == "rectangle":
        draw.rectangle(box, fill=shape.get("fill"), outline=shape.get("outline"), width=width)
    else:
        draw.ellipse(box, fill=shape.get("fill"), outline=shape.get("outline"), width=width)
