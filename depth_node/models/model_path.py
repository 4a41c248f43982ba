"""What a ``--model`` string names, checked before anything loads or reaches the hub.

Supported kinds: an ONNX file, a TensorRT engine, and for the torch backend a TorchScript
file, a checkpoint folder, a model zoo name or a Hugging Face hub id ``org/name``. Anything
else (a ``.tflite``, a model card ``.yaml``, a missing local file) is one clear
:class:`~depth_node.errors.ModelError` naming the supported kinds; only an ``org/name`` id
(or a zoo name) is ever looked up on the hub, never a path that merely does not exist.
"""

from __future__ import annotations

from pathlib import Path
import re

from depth_node.errors import ModelError

ONNX_SUFFIXES = ('.onnx',)
ENGINE_SUFFIXES = ('.engine', '.plan', '.trt')
TORCHSCRIPT_SUFFIXES = ('.pt', '.pth', '.ts', '.torchscript', '.jit')
CARD_SUFFIXES = ('.yaml', '.yml')
#: one line naming every kind of model the tools run
SUPPORTED = ('an ONNX file (.onnx, its <model>.card.yaml beside it or --card), a TensorRT '
             'engine (.engine, .plan, .trt), or for the torch backend a TorchScript file '
             '(.pt, .pth, .ts), a checkpoint folder, a model zoo name (depth-node export '
             '--list) or a Hugging Face hub id org/name')
_HUB_ID = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$')
#: suffixes of local files, so ``models/x.pt`` is a path, never a hub id
_FILE_SUFFIXES = (ONNX_SUFFIXES + ENGINE_SUFFIXES + TORCHSCRIPT_SUFFIXES + CARD_SUFFIXES
                  + ('.tflite', '.pb', '.h5', '.keras', '.safetensors', '.bin', '.ckpt',
                     '.mlmodel', '.xml', '.json', '.npz'))


def is_hub_id(text: str) -> bool:
    """Whether ``text`` reads as a hub id ``org/name`` (not a path, not a file name)."""
    return bool(_HUB_ID.match(text)) and not text.lower().endswith(_FILE_SUFFIXES)


def check_model_path(model: str, what: str = '--model') -> str:
    """Return the kind of model ``model`` names: onnx, engine, torchscript, folder, zoo, hub.

    :param what: how the user gave it (``--model``, ``model_file_path``), for the message.

    :raises ModelError: a file of a kind no backend runs (``.tflite``, a card given as the
        model, ...), or a path that does not exist (it is not sent to the hub).
    """
    path = Path(model).expanduser()
    suffix = path.suffix.lower()
    if path.is_dir():
        return 'folder'
    if path.is_file():
        for kind, suffixes in (('onnx', ONNX_SUFFIXES), ('engine', ENGINE_SUFFIXES),
                               ('torchscript', TORCHSCRIPT_SUFFIXES)):
            if suffix in suffixes:
                return kind
        if suffix in CARD_SUFFIXES:
            raise ModelError(f'{what} {model} is a YAML file (a model card?), not a model.',
                             'Give the model there and its card as the card (--card, '
                             f'card_file_path); {what} takes {SUPPORTED}.')
        raise ModelError(f'{what} {model}: {suffix or "a file without suffix"} is not a '
                         'model kind depth_node runs.',
                         f'Convert it to ONNX; {what} takes {SUPPORTED}.')
    from depth_node.models.zoo import find_entry
    if find_entry(model) is not None:
        return 'zoo'
    if is_hub_id(model):
        return 'hub'
    export = ''
    if suffix == '.onnx':   # most often: the model of the README's quick start, not exported yet
        export = (f'Export it once (PyTorch): depth-node export '
                  f'depth-anything-v2-metric-indoor-small --output {model} (offline: add '
                  '--random-weights; `depth-node export --list` shows the models). Otherwise ')
    raise ModelError(f'{what} {model}: no such file or folder'
                     + (' (not sent to the model hub: hub ids read org/name)'
                        if '/' in model or suffix else ', and not a model zoo name') + '.',
                     f'{export}{"c" if export else "C"}heck the path; {what} takes {SUPPORTED}.')
