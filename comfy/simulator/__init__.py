"""A protocol-faithful ComfyUI simulator: the app's embedded default backend and the test backend.

Public API:

    SimulatedComfy(inventory=None, *, name="sim-gpu-0", speed=1.0, time_model=None,
                   previews=False, output_dir=None, device_index=0)
        await start(host="127.0.0.1", port=0) -> "http://127.0.0.1:PORT"
        await stop(); await restart()          # restart keeps the port
        url, name, faults (Faults), loaded_checkpoint, images_done, inventory,
        time_model (settable at any time)
        remove_checkpoint(name); state() -> dict (same as GET /sim/state)

    SimulatorThread(count=1, host="127.0.0.1", ports=None, **SimulatedComfy kwargs)  # background loop
        start() -> list[url]; stop(); servers; call(coroutine) -> result

    load_inventory(path=None) -> Inventory; Inventory, ModelFile, TimeModel, Faults

CLI: `python -m comfy.simulator --port 8188 [--gpus N --speed X --inventory FILE
--preview-method latent2rgb]` prints one URL per line on stdout.
"""

from comfy.simulator.faults import Faults
from comfy.simulator.inventory import Inventory, ModelFile, load_inventory
from comfy.simulator.server import SimulatedComfy
from comfy.simulator.thread import SimulatorThread
from comfy.simulator.timemodel import TimeModel

__all__ = ["Faults", "Inventory", "ModelFile", "SimulatedComfy", "SimulatorThread", "TimeModel", "load_inventory"]
