"""Tiny random-weight Depth Anything and DPT networks built with transformers (not a test module).

:func:`build_tiny` exports one to ONNX with its card and golden reference; the ``tiny``
fixture of ``conftest.py`` gives both architectures to a test module.
"""

from __future__ import annotations

from pathlib import Path

from depth_node.models.card import card_path_for, ModelCard
from depth_node.models.golden import make_reference
import torch


class DepthOnly(torch.nn.Module):
    """(1, 3, H, W) normalised input -> (1, H', W') predicted depth."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model(pixel_values=pixel_values).predicted_depth


def tiny_depth_anything(seed=0):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config
    torch.manual_seed(seed)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                            intermediate_size=64, patch_size=14, image_size=56,
                            out_indices=[1, 2, 3, 4], reshape_hidden_states=False,
                            initializer_range=0.1)
    config = DepthAnythingConfig(backbone_config=backbone, patch_size=14,
                                 reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
                                 fusion_hidden_size=16, head_hidden_size=8,
                                 initializer_range=0.1)
    return DepthOnly(DepthAnythingForDepthEstimation(config).eval()).eval()


def tiny_dpt(seed=1):
    from transformers import DPTConfig, DPTForDepthEstimation
    torch.manual_seed(seed)
    config = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                       intermediate_size=64, image_size=56, patch_size=14,
                       backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 16, 32, 32],
                       fusion_hidden_size=16, use_auxiliary_head=False, initializer_range=0.2)
    return DepthOnly(DPTForDepthEstimation(config).eval()).eval()


def export(module, path, width, height):
    x = torch.zeros(1, 3, height, width)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=17,
                          input_names=['pixel_values'], output_names=['predicted_depth'])
    return path


MODELS = {
    # name: (builder, network width, height, card fields)
    'depth_anything': (tiny_depth_anything, 70, 56,
                       {'resize': 'keep_aspect_pad', 'interpolation': 'cubic',
                        'output_kind': 'relative_inverse_depth'}),
    'dpt': (tiny_dpt, 56, 56, {'resize': 'keep_aspect_crop', 'interpolation': 'linear',
                               'output_kind': 'relative_inverse_depth',
                               'image_mean': (0.5, 0.5, 0.5), 'image_stddev': (0.5, 0.5, 0.5)}),
}


def build_tiny(name: str, folder: Path) -> tuple:
    """Return (torch module, ONNX path, card with reference) of the tiny architecture ``name``."""
    builder, w, h, fields = MODELS[name]
    module = builder()
    path = export(module, folder / f'{name}.onnx', w, h)
    card = ModelCard(name=f'tiny-{name}', source='test', license='test',
                     input_name='pixel_values', output_name='predicted_depth',
                     network_image_width=w, network_image_height=h,
                     **{'image_mean': (0.485, 0.456, 0.406),
                        'image_stddev': (0.229, 0.224, 0.225), **fields})

    def run_torch(tensor):
        with torch.inference_mode():
            return module(torch.from_numpy(tensor))
    card.reference = make_reference(run_torch, card)
    card.validate()
    card.save(card_path_for(path))
    return module, path, card
