"""The model zoo: depth networks the export tool knows under short names, carried offline.

Each :class:`ZooEntry` holds what is needed to build the architecture without the Hugging Face
hub (the transformers configuration class and its keyword arguments, with the real sizes of the
released checkpoints), the hub id of the trained weights, and the card fields (preprocessing and
the meaning of the output). ``--random-weights`` builds the same architecture with seeded random
weights: latency does not depend on the weight values, so benchmarks and tests need no download.

torch and transformers are imported lazily (``pip install 'depth_node[torch]'``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
import os
from pathlib import Path
from typing import Any

from depth_node.errors import CardError, ModelError, require

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)

# Seed of ``--random-weights``: the same short name gives the same weights on every machine.
RANDOM_WEIGHTS_SEED = 0


@dataclass(frozen=True)
class ZooEntry:
    """One supported architecture and checkpoint.

    :param name: short name (``depth-anything-v2-small``).
    :param hub_id: Hugging Face hub id of the trained weights.
    :param config_class: transformers configuration class name.
    :param model_class: transformers model class name (``...ForDepthEstimation``).
    :param config: keyword arguments of ``config_class``; ``backbone_config`` is a mapping with
        ``model_type`` naming the backbone configuration.
    :param default_size: default network input ``(width, height)``.
    :param size_multiple: the input width and height must be multiples of this (ViT patch grid).
    :param card: card fields (preprocessing, output meaning, licence).
    :param description: one line for ``depth-node export --list``.
    :param aliases: other names accepted for this entry.
    :param square: the input must be square (transformers' DPT reshapes its token grid as a
        square).
    """

    name: str
    hub_id: str
    config_class: str
    model_class: str
    config: dict[str, Any]
    default_size: tuple[int, int]
    size_multiple: int
    card: dict[str, Any]
    description: str = ''
    aliases: tuple[str, ...] = field(default=())
    square: bool = False


def _dinov2(size: str, out_indices: list[int]) -> dict[str, Any]:
    hidden, layers, heads = {'small': (384, 12, 6), 'base': (768, 12, 12),
                             'large': (1024, 24, 16)}[size]
    return {'model_type': 'dinov2', 'hidden_size': hidden, 'num_hidden_layers': layers,
            'num_attention_heads': heads, 'mlp_ratio': 4, 'image_size': 518, 'patch_size': 14,
            'layerscale_value': 1.0, 'layer_norm_eps': 1e-6, 'out_indices': out_indices,
            'apply_layernorm': True, 'reshape_hidden_states': False}


_DA_NECK = {'small': ([48, 96, 192, 384], 64), 'base': ([96, 192, 384, 768], 128),
            'large': ([256, 512, 1024, 1024], 256)}
# Which DINOv2 layers feed the DPT neck (transformers' conversion script of Depth Anything).
_DA_OUT_INDICES = {('v1', 'small'): [9, 10, 11, 12], ('v1', 'base'): [9, 10, 11, 12],
                   ('v1', 'large'): [21, 22, 23, 24], ('v2', 'small'): [3, 6, 9, 12],
                   ('v2', 'base'): [3, 6, 9, 12], ('v2', 'large'): [5, 12, 18, 24]}
# Licences of the released weights (see each hub page; NC = non-commercial).
_DA_LICENSE = {'small': 'Apache-2.0', 'base': 'CC-BY-NC-4.0', 'large': 'CC-BY-NC-4.0'}


def _depth_anything(version: str, size: str, metric: str | None = None) -> ZooEntry:
    neck, fusion = _DA_NECK[size]
    backbone = _dinov2(size, _DA_OUT_INDICES[(version, size)])
    config = {'backbone_config': backbone, 'reassemble_hidden_size': backbone['hidden_size'],
              'patch_size': 14, 'neck_hidden_sizes': neck, 'fusion_hidden_size': fusion,
              'reassemble_factors': [4, 2, 1, 0.5], 'head_hidden_size': 32,
              'depth_estimation_type': 'metric' if metric else 'relative',
              'max_depth': {'indoor': 20, 'outdoor': 80}.get(metric or '', 1)}
    cap = size.capitalize()
    card = {'image_mean': IMAGENET_MEAN, 'image_stddev': IMAGENET_STD, 'resize': 'stretch',
            'interpolation': 'cubic', 'pixel_scale': 1 / 255, 'input_encoding': 'rgb8'}
    if version == 'v1':
        name, hub = f'depth-anything-{size}', f'LiheYoung/depth-anything-{size}-hf'
        card.update(output_kind='relative_inverse_depth', license='Apache-2.0')
        what = f'Depth Anything V1 {size} (relative inverse depth)'
    elif metric is None:
        name, hub = f'depth-anything-v2-{size}', f'depth-anything/Depth-Anything-V2-{cap}-hf'
        card.update(output_kind='relative_inverse_depth', license=_DA_LICENSE[size])
        what = f'Depth Anything V2 {size} (relative inverse depth)'
    else:
        name = f'depth-anything-v2-metric-{metric}-{size}'
        hub = f'depth-anything/Depth-Anything-V2-Metric-{metric.capitalize()}-{cap}-hf'
        card.update(output_kind='metric_depth', max_depth=float(config['max_depth']),
                    license=_DA_LICENSE[size])
        what = (f'Depth Anything V2 metric {metric} {size} (metres, up to '
                f"{config['max_depth']} m; trained on "
                f"{'Hypersim' if metric == 'indoor' else 'Virtual KITTI 2'})")
    card.update(name=name, source=hub)
    return ZooEntry(name=name, hub_id=hub, config_class='DepthAnythingConfig',
                    model_class='DepthAnythingForDepthEstimation', config=config,
                    default_size=(518, 518), size_multiple=14, card=card, description=what)


def _dpt_large() -> ZooEntry:
    config = {'hidden_size': 1024, 'intermediate_size': 4096, 'num_hidden_layers': 24,
              'num_attention_heads': 16, 'backbone_out_indices': [5, 11, 17, 23],
              'neck_hidden_sizes': [256, 512, 1024, 1024], 'fusion_hidden_size': 256,
              'reassemble_factors': [4, 2, 1, 0.5], 'readout_type': 'project',
              'image_size': 384, 'patch_size': 16, 'use_auxiliary_head': False}
    card = {'name': 'dpt-large', 'source': 'Intel/dpt-large', 'license': 'Apache-2.0',
            'image_mean': HALF, 'image_stddev': HALF, 'resize': 'stretch',
            'interpolation': 'cubic', 'output_kind': 'relative_inverse_depth'}
    return ZooEntry(name='dpt-large', hub_id='Intel/dpt-large', config_class='DPTConfig',
                    model_class='DPTForDepthEstimation', config=config, default_size=(384, 384),
                    size_multiple=32, card=card, square=True,
                    description='DPT-Large / MiDaS v3 (ViT-L/16, relative inverse depth)')


def _dpt_hybrid() -> ZooEntry:
    backbone = {'model_type': 'bit', 'global_padding': 'same', 'layer_type': 'bottleneck',
                'depths': [3, 4, 9], 'out_features': ['stage1', 'stage2', 'stage3'],
                'embedding_dynamic_padding': True}
    config = {'is_hybrid': True, 'backbone_config': backbone, 'hidden_size': 768,
              'intermediate_size': 3072, 'num_hidden_layers': 12, 'num_attention_heads': 12,
              'backbone_out_indices': [2, 5, 8, 11], 'neck_hidden_sizes': [256, 512, 768, 768],
              'reassemble_factors': [1, 1, 1, 0.5], 'fusion_hidden_size': 256,
              'readout_type': 'project', 'image_size': 384, 'patch_size': 16,
              'backbone_featmap_shape': [1, 1024, 24, 24], 'neck_ignore_stages': [0, 1],
              'use_batch_norm_in_fusion_residual': False, 'use_auxiliary_head': False}
    card = {'name': 'dpt-hybrid-midas', 'source': 'Intel/dpt-hybrid-midas',
            'license': 'Apache-2.0', 'image_mean': HALF, 'image_stddev': HALF,
            'resize': 'stretch', 'interpolation': 'cubic',
            'output_kind': 'relative_inverse_depth'}
    return ZooEntry(name='dpt-hybrid-midas', hub_id='Intel/dpt-hybrid-midas',
                    config_class='DPTConfig', model_class='DPTForDepthEstimation',
                    config=config, default_size=(384, 384), size_multiple=32, card=card,
                    square=True,
                    description='DPT-Hybrid / MiDaS v3 (BiT-R50 + ViT-B/16, relative inverse '
                                'depth)')


def _zoedepth(domain: str) -> ZooEntry:
    backbone = {'model_type': 'beit', 'image_size': 384, 'num_hidden_layers': 24,
                'hidden_size': 1024, 'intermediate_size': 4096, 'num_attention_heads': 16,
                'use_relative_position_bias': True, 'reshape_hidden_states': False,
                'out_features': ['stage6', 'stage12', 'stage18', 'stage24']}
    max_depth = {'nyu': 10.0, 'kitti': 80.0}[domain]
    config = {'backbone_config': backbone, 'neck_hidden_sizes': [256, 512, 1024, 1024],
              'bin_centers_type': 'softplus' if domain == 'nyu' else 'normed',
              'bin_configurations': [{'name': domain, 'n_bins': 64, 'min_depth': 1e-3,
                                      'max_depth': max_depth}]}
    name = f'zoedepth-{domain}'
    card = {'name': name, 'source': f'Intel/{name}', 'license': 'MIT', 'image_mean': HALF,
            'image_stddev': HALF, 'resize': 'stretch', 'interpolation': 'cubic',
            'output_kind': 'metric_depth', 'max_depth': max_depth}
    return ZooEntry(name=name, hub_id=f'Intel/{name}', config_class='ZoeDepthConfig',
                    model_class='ZoeDepthForDepthEstimation', config=config,
                    default_size=(512, 384), size_multiple=32, card=card,
                    description=f'ZoeDepth {domain.upper()} (BEiT-L/16, metres up to '
                                f'{max_depth:g} m)')


def _build_zoo() -> dict[str, ZooEntry]:
    entries = [_depth_anything('v2', s) for s in ('small', 'base', 'large')]
    entries += [_depth_anything('v2', s, m) for m in ('indoor', 'outdoor')
                for s in ('small', 'base', 'large')]
    entries += [_depth_anything('v1', s) for s in ('small', 'base', 'large')]
    entries += [_dpt_hybrid(), _dpt_large(), _zoedepth('nyu'), _zoedepth('kitti')]
    return {e.name: e for e in entries}


ZOO: dict[str, ZooEntry] = _build_zoo()

# Checkpoints users ask for that cannot be exported as one static graph, with the reason.
UNSUPPORTED = {
    'zoedepth-nyu-kitti': 'Intel/zoedepth-nyu-kitti picks its NYU or KITTI head from the image '
                          'at run time (data-dependent control flow), which a static ONNX graph '
                          'cannot hold; use zoedepth-nyu (indoor) or zoedepth-kitti (outdoor)',
    'Intel/zoedepth-nyu-kitti': 'see zoedepth-nyu-kitti',
    'depth-anything-3': 'Depth Anything 3 has no implementation in transformers 5.24',
    'metric3d': 'Metric3D has no implementation in transformers 5.24',
}


def list_models() -> list[ZooEntry]:
    """All zoo entries, in a stable order."""
    return list(ZOO.values())


def find_entry(model: str) -> ZooEntry | None:
    """Return the zoo entry for a short name or hub id (case-insensitive), or None."""
    key = model.strip().lower()
    for entry in ZOO.values():
        if key in (entry.name, entry.hub_id.lower(), *entry.aliases):
            return entry
    return None


def parse_input_size(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``'518x392'`` -> ``(518, 392)`` (width, height); None stays None.

    :raises ModelError: on a malformed or non-positive size.
    """
    if text is None:
        return None
    if isinstance(text, (tuple, list)):
        parts = list(text)
    else:
        parts = str(text).lower().replace('*', 'x').split('x')
    try:
        if len(parts) != 2:
            raise ValueError
        width, height = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise ModelError(f'Input size {text!r} is not WIDTHxHEIGHT.',
                         'Give it as two integers, e.g. --input-size 518x392.') from None
    if width <= 0 or height <= 0:
        raise ModelError(f'Input size {text!r} must be positive.',
                         'Give it as two integers, e.g. --input-size 518x392.')
    return width, height


def check_input_size(size: tuple[int, int], multiple: int, model: str) -> None:
    """Raise :class:`ModelError` unless width and height are multiples of ``multiple``."""
    width, height = size
    if width % multiple or height % multiple:
        def near(v: int) -> str:
            lo = max(multiple, v // multiple * multiple)
            return f'{lo} or {lo + multiple}' if lo != v else str(v)
        raise ModelError(
            f'Input size {width}x{height} does not fit {model}: width and height must be '
            f'multiples of {multiple} (its patch grid).',
            f'Use e.g. --input-size {near(width).split()[0]}x{near(height).split()[0]} '
            f'(width: {near(width)}; height: {near(height)}).')


def build_config(entry: ZooEntry, overrides: dict[str, Any] | None = None):
    """Return the transformers configuration object of a zoo entry (no hub access).

    :param overrides: keyword arguments replacing the entry's (``backbone_config`` entries are
        merged into the backbone's), e.g. for tiny test models.
    """
    transformers = require('transformers', 'building depth networks')
    kwargs = copy.deepcopy(entry.config)
    for key, value in (overrides or {}).items():
        if key == 'backbone_config' and isinstance(value, dict):
            kwargs['backbone_config'].update(value)
        else:
            kwargs[key] = value
    backbone = kwargs.pop('backbone_config', None)
    if backbone is not None:
        backbone = dict(backbone)
        model_type = backbone.pop('model_type')
        backbone = transformers.AutoConfig.for_model(model_type, **backbone)
        kwargs['backbone_config'] = backbone
    config_class = getattr(transformers, entry.config_class)
    return config_class(**kwargs)


def _depth_wrapper_class():
    torch = require('torch', 'building depth networks')

    class DepthNetwork(torch.nn.Module):
        """forward(pixel_values (1,3,H,W) normalised) -> predicted depth (1,H,W) float32."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            depth = self.model(pixel_values=pixel_values).predicted_depth
            if depth.dim() == 4:
                depth = depth[:, 0]
            if tuple(depth.shape[-2:]) != tuple(pixel_values.shape[-2:]):
                depth = torch.nn.functional.interpolate(
                    depth[:, None], size=tuple(pixel_values.shape[-2:]), mode='bilinear',
                    align_corners=False)[:, 0]
            return depth

    return DepthNetwork


def randomize_weights(module, seed: int = RANDOM_WEIGHTS_SEED) -> None:
    """Seeded random weights whose activations neither vanish nor explode.

    transformers' small-std initialisation makes a DPT head's output vanish (about 1e-7), which
    would make the export check and the golden self-test compare zeros. Convolutions and linear
    layers get a variance-preserving (Kaiming, fan-in) initialisation instead, biases small
    uniform values; normalisation layers keep weight 1 and bias 0. Does not touch the global RNG.
    """
    torch = require('torch', 'random weights')
    nn = torch.nn
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                weight = sub.weight
                fan_in = weight[0].numel() if not isinstance(sub, nn.ConvTranspose2d) else (
                    weight.shape[0] * weight[0, 0].numel())
                std = (1.0 / max(fan_in, 1)) ** 0.5
                weight.copy_(torch.randn(weight.shape, generator=generator) * std)
                if sub.bias is not None:
                    sub.bias.copy_((torch.rand(sub.bias.shape, generator=generator) - 0.5) * 0.2)
            elif isinstance(sub, (nn.LayerNorm, nn.BatchNorm2d, nn.GroupNorm)):
                if getattr(sub, 'weight', None) is not None:
                    sub.weight.fill_(1.0)
                if getattr(sub, 'bias', None) is not None:
                    sub.bias.zero_()
            for name, param in sub.named_parameters(recurse=False):
                # tokens, position embeddings, layer scales: small seeded values
                if name in ('weight', 'bias') and isinstance(
                        sub, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.LayerNorm,
                              nn.BatchNorm2d, nn.GroupNorm)):
                    continue
                if 'lambda' in name or 'gamma' in name or 'layer_scale' in name:
                    param.fill_(1.0)
                else:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.02)


def calibrate_output_layer(wrapper, size: tuple[int, int],
                           seed: int = RANDOM_WEIGHTS_SEED) -> bool:
    """Rescale the last one-channel convolution so its output has mean 1 and std 1.

    With random weights the final activation (ReLU for relative heads, sigmoid for metric heads)
    would otherwise see an almost constant input and output zeros or a constant: the export check
    and the golden self-test need an output that varies. Returns False when no such layer ran.
    """
    torch = require('torch', 'random weights')
    last = None
    for sub in wrapper.modules():
        if isinstance(sub, torch.nn.Conv2d) and sub.out_channels == 1:
            last = sub
    if last is None:
        return False
    seen = []
    handle = last.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    generator = torch.Generator().manual_seed(seed + 1)
    try:
        with torch.no_grad():
            wrapper(torch.randn((1, 3, size[1], size[0]), generator=generator))
    finally:
        handle.remove()
    if not seen:
        return False
    out = seen[-1]
    mean, std = float(out.mean()), float(out.std())
    if not std > 0:
        return False
    with torch.no_grad():
        last.weight.div_(std)
        if last.bias is None:
            last.bias = torch.nn.Parameter(torch.zeros(1), requires_grad=False)
        last.bias.sub_(mean).div_(std).add_(1.0)
    return True


def _hub_error(model: str, exc: Exception) -> ModelError:
    offline = os.environ.get('HF_HUB_OFFLINE', '') not in ('', '0')
    why = 'HF_HUB_OFFLINE is set' if offline else 'the hub is unreachable or the id is wrong'
    hint = ('Check the id and your internet connection, or download the checkpoint once '
            f'(hf download {model} --local-dir DIR) and pass DIR; for benchmarks and '
            'tests that need no trained weights use --random-weights.')
    if not offline:
        hint += (' Without internet, set HF_HUB_OFFLINE=1 to fail at once instead of after '
                 "the hub client's retries.")
    return ModelError(
        f'Cannot load the weights of {model!r} from the Hugging Face hub ({why}): '
        f'{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else exc!r}.', hint)


def _card_fields(entry: ZooEntry | None, config, size: tuple[int, int], source: str,
                 random_weights: bool) -> dict[str, Any]:
    fields: dict[str, Any] = dict(entry.card) if entry else {}
    if entry is None:
        fields.update(name=Path(source).name or source, source=source,
                      **_card_from_config(config))
    if random_weights:
        fields['name'] = f"{fields.get('name', source)} (random weights)"
        fields['license'] = 'none (random weights, not a trained model)'
    fields.update(network_image_width=size[0], network_image_height=size[1], layout='nchw',
                  input_name='pixel_values', output_name='predicted_depth')
    return fields


def _card_from_config(config) -> dict[str, Any]:
    """Card fields for a checkpoint outside the zoo, from its transformers config."""
    model_type = getattr(config, 'model_type', '')
    if model_type == 'depth_anything':
        metric = getattr(config, 'depth_estimation_type', 'relative') == 'metric'
        out = {'image_mean': IMAGENET_MEAN, 'image_stddev': IMAGENET_STD,
               'interpolation': 'cubic', 'resize': 'stretch',
               'output_kind': 'metric_depth' if metric else 'relative_inverse_depth'}
        if metric:
            out['max_depth'] = float(config.max_depth)
        return out
    if model_type == 'dpt':
        return {'image_mean': HALF, 'image_stddev': HALF, 'interpolation': 'cubic',
                'resize': 'stretch', 'output_kind': 'relative_inverse_depth'}
    if model_type == 'zoedepth':
        bins = config.bin_configurations or [{}]
        return {'image_mean': HALF, 'image_stddev': HALF, 'interpolation': 'cubic',
                'resize': 'stretch', 'output_kind': 'metric_depth',
                'max_depth': float(max(b.get('max_depth', 10.0) for b in bins))}
    raise CardError(f'Model type {model_type!r} is not one the export tool knows '
                    '(depth_anything, dpt, zoedepth).',
                    'Export it yourself and write its card by hand (see doc/models.md).')


_FAMILY = {'depth_anything': (14, (518, 518)), 'dpt': (32, (384, 384)),
           'zoedepth': (32, (512, 384))}


def _check_size(size: tuple[int, int], multiple: int, square: bool, model: str) -> None:
    check_input_size(size, multiple, model)
    if square and size[0] != size[1]:
        raise ModelError(f"Input size {size[0]}x{size[1]} does not fit {model}: transformers' "
                         'DPT reshapes its token grid as a square, so width must equal height.',
                         f'Use a square size such as --input-size {max(size)}x{max(size)} (the '
                         'card stretches the image to it).')


def _from_pretrained(transformers: Any, source: str, local: Path, random_weights: bool):
    """Return ``(network, config)`` of a hub id or checkpoint folder (random weights: config)."""
    auto = transformers.AutoModelForDepthEstimation
    try:
        if random_weights:
            config = transformers.AutoConfig.from_pretrained(source)
            return auto.from_config(config), config
        net = auto.from_pretrained(source)
        return net, net.config
    except Exception as exc:  # OSError (hub, files), ValueError (unknown model type), ...
        if local.is_dir():
            raise ModelError(f'Cannot load the checkpoint in {local}: '
                             f'{type(exc).__name__}: {exc}.',
                             'It must be a transformers checkpoint directory (config.json '
                             'plus weights) of a depth estimation model.') from exc
        if isinstance(exc, OSError):
            raise _hub_error(source, exc) from exc
        raise ModelError(f'Cannot load {source!r}: {type(exc).__name__}: {exc}.',
                         'Check that it is a transformers depth estimation model '
                         '(Depth Anything, DPT, ZoeDepth).') from exc


def load_torch_model(model: str, random_weights: bool = False,
                     input_size: tuple[int, int] | str | None = None, *,
                     config_overrides: dict[str, Any] | None = None,
                     seed: int = RANDOM_WEIGHTS_SEED):
    """Return a depth network as a torch module plus its card (without ``reference``).

    :param model: zoo short name, hub id or local checkpoint directory.
    :param random_weights: build the architecture with seeded random weights (offline for zoo
        names; hub ids outside the zoo still need their config.json).
    :param input_size: network input ``(width, height)`` or ``'WxH'``; default per model.
    :param config_overrides: replace configuration entries (tiny test models); zoo names only.
    :returns: ``(module, card)``: ``module(pixel_values)`` maps a normalised ``(1, 3, H, W)``
        float32 tensor to ``(1, H, W)`` float32 depth (units per ``card.output_kind``), in eval
        mode on the CPU.
    :raises ModelError: unknown name, hub unreachable, bad input size.
    """
    transformers = require('transformers', 'building depth networks')
    from depth_node.models.card import ModelCard

    unsupported = UNSUPPORTED.get(model) or UNSUPPORTED.get(model.strip().lower())
    if unsupported:
        raise ModelError(f'{model!r} cannot be exported: {unsupported}.',
                         'See doc/models.md for what is covered.')
    size = parse_input_size(input_size)
    entry = find_entry(model)
    if entry is not None:  # fail on a bad size before a long build or download
        _check_size(size or entry.default_size, entry.size_multiple, entry.square, model)
    local = Path(model).expanduser()
    if entry is not None and random_weights:
        config = build_config(entry, config_overrides)
        net = getattr(transformers, entry.model_class)(config)
    elif config_overrides:
        raise ModelError('config_overrides only apply to zoo names with random weights.',
                         'Pass random_weights=True and a short name from the zoo.')
    elif entry is None and not local.is_dir() and ('/' not in model or local.exists()):
        names = ', '.join(ZOO)
        raise ModelError(f'Unknown model {model!r}: neither a zoo name, a hub id '
                         '(owner/name) nor a checkpoint directory.',
                         f'Use one of: {names}; or a transformers hub id or local directory.')
    else:
        source = str(local) if local.is_dir() else (entry.hub_id if entry else model)
        net, config = _from_pretrained(transformers, source, local, random_weights)
    net = net.float()  # checkpoints stored in fp16/bf16 are exported and verified in fp32
    if random_weights:
        randomize_weights(net, seed)
    model_type = getattr(config, 'model_type', '')
    multiple, default = ((entry.size_multiple, entry.default_size) if entry
                         else _FAMILY.get(model_type, (14, (518, 518))))
    size = size or default
    _check_size(size, multiple, entry.square if entry else model_type == 'dpt', model)
    for sub in net.modules():
        # DPT-Hybrid refuses other input sizes than its config's unless told; its position
        # embeddings are resized to the patch grid at run time like the other ViTs'.
        if type(sub).__name__ == 'DPTViTHybridEmbeddings':
            sub.image_size = (size[1], size[0])
    fields = _card_fields(entry, config, size, model, random_weights)
    card = ModelCard.from_dict(fields)
    wrapper = _depth_wrapper_class()(net.eval()).eval()
    for param in wrapper.parameters():
        param.requires_grad_(False)
    if random_weights:
        calibrate_output_layer(wrapper, size, seed)
    return wrapper, card
