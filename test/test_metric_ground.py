"""Issue 10 point 9: ground_plane on a tilted camera, ``ground_up`` as a parameter and flag.

A synthetic flat floor seen by a camera 1.2 m above it, pitched down 20 and 35 degrees: with
the pitch given as ``ground_up`` the floor is found with the default ``ground_max_tilt_deg``
and the depth is metric; without it the fit is refused, and the summary shows the numbers.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

from camera_helpers import pinhole
from depth_node import parameters
from depth_node.bag_summary import ReasonCounter, relative_only_reason
from depth_node.metric import MetricConfig, MetricConverter
from depth_node.pipeline import PipelineConfig
from depth_node.tools.arguments import add_parameter_flags, values_from_args
import numpy as np
import pytest

HEIGHT = 1.2


def up_for_pitch(pitch_deg: float) -> tuple[float, float, float]:
    """Up in the optical frame of a camera pitched down by ``pitch_deg``."""
    p = math.radians(pitch_deg)
    return (0.0, -math.cos(p), -math.sin(p))


def floor_scene(pitch_deg: float, k: float = 3.7):
    """(camera, relative inverse depth = k / z, true depth z) of a floor with a far wall."""
    camera = pinhole(160, 120, fx=130.0, fy=130.0, cx=79.5, cy=59.5)
    rays = camera.ray_table().astype(np.float64)
    up = np.asarray(up_for_pitch(pitch_deg))
    along = rays @ up                           # < 0: the ray goes down towards the floor
    with np.errstate(divide='ignore'):
        z = np.where(along < -1e-3, -HEIGHT / along, np.inf)
    z = np.minimum(z, 30.0)                     # a wall 30 m ahead closes the view
    return camera, (k / z).astype(np.float32), z.astype(np.float32)


def convert(pitch_deg: float, ground_up=None):
    camera, raw, z = floor_scene(pitch_deg)
    config = MetricConfig(scale_source='ground_plane', camera_height=HEIGHT,
                          **({'ground_up': ground_up} if ground_up is not None else {}))
    card = SimpleNamespace(output_kind='relative_inverse_depth', max_depth=0.0,
                           canonical_focal_px=0.0)
    depth, _, report = MetricConverter(card, config).convert(raw, camera, None)
    return depth, z, report


@pytest.mark.parametrize('pitch', [20.0, 35.0])
def test_tilted_camera_finds_the_floor_with_ground_up(pitch):
    depth, z, report = convert(pitch, up_for_pitch(pitch))
    assert report.metric and report.accepted, report.message
    assert MetricConfig().ground_max_tilt_deg == 15.0          # the default limit
    floor = np.isfinite(depth) & (z < 10)
    assert floor.mean() > 0.3
    np.testing.assert_allclose(depth[floor], z[floor], rtol=1e-3)


@pytest.mark.parametrize('pitch', [20.0, 35.0])
def test_tilted_camera_without_ground_up_is_refused_with_the_numbers(pitch):
    depth, _, report = convert(pitch)
    assert depth is None and not report.metric
    assert f'{pitch:.1f} deg from ground_up' in report.message
    reason = relative_only_reason(report, numbers=True)
    assert f'{pitch:.1f} deg' in reason and 'ground_max_tilt_deg=15.0' in reason


def test_reasons_show_numbers_and_their_range():
    counter = ReasonCounter()
    for tilt in ('21.4', '19.8', '20.3'):
        counter.add(f'ground_plane: the fitted floor normal is {tilt} deg from ground_up '
                    '(limit ground_max_tilt_deg=15.0): no flat floor in view')
    counter.add('sparse_depth: no sparse depth image for this frame')
    assert counter.counts() == {
        'ground_plane: the fitted floor normal is 19.8..21.4 deg from ground_up (limit '
        'ground_max_tilt_deg=15.0): no flat floor in view': 3,
        'sparse_depth: no sparse depth image for this frame': 1}
    assert list(counter.examples().values())[0].endswith('no flat floor in view')
    assert ' N ' not in ' '.join(counter.counts())


def test_ground_up_is_a_parameter_and_a_flag():
    import argparse
    spec = parameters.BY_NAME['ground_up']
    assert spec.default == [0.0, -1.0, 0.0] and not spec.node_only
    parser = argparse.ArgumentParser()
    add_parameter_flags(parser)
    args = parser.parse_args(['--ground-up', '0,-0.94,-0.342'])
    values = values_from_args(args)
    assert parameters.validate_all(values) == []
    assert PipelineConfig.from_values(values).metric.ground_up == (0.0, -0.94, -0.342)


@pytest.mark.parametrize('frame, fx, cx, cy', [('000000', 707.0493, 604.0814, 180.5066),
                                               ('000001', 721.5377, 609.5593, 172.854)])
def test_kitti_road_gives_the_scale(shared_data, frame, fx, cx, cy):
    """KITTI: LiDAR depth times an unknown factor is made metric again from the road alone.

    Real geometry; the KITTI cameras are 1.65 m above the road and about level.
    """
    cv2 = pytest.importorskip('cv2')
    path = shared_data / 'rgbd' / 'kitti_object' / f'{frame}_velodyne_sparse_depth.png'
    lidar = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float32) / 256.0
    height, width = lidar.shape
    camera = pinhole(width, height, fx=fx, fy=fx, cx=cx, cy=cy)
    raw = np.where(lidar > 0, 0.37 * lidar, np.nan).astype(np.float32)   # relative depth
    card = SimpleNamespace(output_kind='relative_depth', max_depth=0.0, canonical_focal_px=0.0)
    config = MetricConfig(scale_source='ground_plane', camera_height=1.65)
    depth, _, report = MetricConverter(card, config).convert(raw, camera, None)
    assert report.metric, report.message
    assert report.scale == pytest.approx(1 / 0.37, rel=0.05)
    measured = np.isfinite(depth) & (lidar > 0)
    assert np.median(np.abs(depth[measured] - lidar[measured]) / lidar[measured]) < 0.05
