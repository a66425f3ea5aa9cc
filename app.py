"""DraftGrid entry point: parse config, start the backend, build the UI, add the REST API, launch.

`python app.py` with no ComfyUI URL starts the built-in simulator (clearly labelled in the UI);
`python app.py --comfy http://gpu1:8188 --comfy http://gpu2:8188` drives real servers through
the same code. A bad flag or environment value exits with status 2 and one line on stderr.
"""

from __future__ import annotations

import logging
import sys
import threading

from draftgrid.config import ConfigError, parse_config
from draftgrid.process_tuning import freeze_startup_objects, tune_for_serving
from learning.pools import PoolConfigError
from learning.store.errors import DatabaseLockedError


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_config(argv)
    except ConfigError as exc:
        print(f"app.py: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "httpcore", "aiohttp.access"):  # one line per request drowns the decisions
        logging.getLogger(chatty).setLevel(logging.WARNING)
    tune_for_serving()  # before Gradio's import starts any thread (logged: logging is set up first)
    from draftgrid.bootstrap import start_backend  # the store opens before Gradio loads: a locked file fails fast
    try:
        backend = start_backend(config)
    except (DatabaseLockedError, PoolConfigError) as exc:
        print(f"DraftGrid cannot start: {exc}", file=sys.stderr)
        return 2
    from draftgrid.launch import launch  # Gradio loads only once the configuration and the database are good
    running = launch(config, backend)
    freeze_startup_objects()
    print(f"DraftGrid is running at {running.local_url}" + (f" (public: {running.share_url})" if running.share_url else ""),
          flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
