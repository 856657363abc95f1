"""The tracker's web pages: static HTML, CSS and JavaScript served by `tracker.web`.

No build step: plain files in `web/static/`, Leaflet from the `xstatic-leaflet` package.
"""

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
