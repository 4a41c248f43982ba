"""NodeDiagnostics: rolling rates, latency statistics, error counts, level and message."""

from __future__ import annotations

import math
from types import SimpleNamespace

from depth_node import diagnostics as dg


class FakeClock:

    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_rate_meter_window():
    clock = FakeClock()
    meter = dg.RateMeter(window_s=2.0, clock=clock)
    assert meter.rate() == 0.0
    for _ in range(11):
        meter.tick()
        clock.t += 0.1
    assert math.isclose(meter.rate(), 10.0, rel_tol=1e-6)
    clock.t += 5.0
    assert meter.rate() == 0.0 and meter.count() == 0 and meter.total == 11


def test_rolling_stat_ignores_nan():
    stat = dg.RollingStat(size=4)
    assert stat.summary() == {}
    for v in (1.0, float('nan'), 2.0, 3.0, 4.0, 10.0):
        stat.add(v)
    s = stat.summary()
    assert s['n'] == 4 and s['max'] == 10.0 and s['last'] == 10.0
    assert math.isclose(s['mean'], (2 + 3 + 4 + 10) / 4)
    assert s['median'] == 3.5       # one slow sample moves the mean, not the median


def make_diag():
    clock = FakeClock()
    return dg.NodeDiagnostics(window_s=5.0, clock=clock), clock


def test_report_contents_and_ok_level():
    diag, clock = make_diag()
    scale = SimpleNamespace(metric=True, source='fixed', scale=2.5, shift=0.1, quality=0.02,
                            n_points=100, accepted=True, message='')
    for i in range(10):
        diag.image_received()
        diag.frame_published({'inference_ms': 20.0 + i, 'decode_ms': 1.0}, 0.050, scale, True)
        clock.t += 0.1
    diag.frame_dropped(3)
    report = diag.report(errors={}, backend_info={'backend': 'onnxruntime', 'device': 'cpu'},
                         extra={'sync policy': 'exact'})
    values = report.as_dict()
    assert report.level == dg.OK and report.message == 'publishing'
    assert math.isclose(float(values['input rate (Hz)']), 10.0, rel_tol=1e-3)
    assert math.isclose(float(values['inference mean (ms)']), 24.5, abs_tol=0.05)
    assert math.isclose(float(values['inference median (ms)']), 24.5, abs_tol=0.05)
    assert math.isclose(float(values['latency mean (ms)']), 50.0, abs_tol=0.05)
    assert values['stale frames dropped'] == '3'
    assert values['backend backend'] == 'onnxruntime'
    assert values['scale'] == '2.5' and values['scale source'] == 'fixed'
    assert values['output'] == 'metric depth'
    assert values['sync policy'] == 'exact'
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in report.values)


def test_levels():
    diag, clock = make_diag()
    assert diag.report(state='inactive').level == dg.STALE
    report = diag.report()
    assert report.level == dg.WARN and 'no images' in report.message
    diag.image_received()
    assert diag.report(subscribers=0).level == dg.OK          # idle by design
    assert diag.report(subscribers=2).level == dg.WARN
    # errors since the last report, nothing published: ERROR naming the main kind
    report = diag.report(errors={'bad_image': 3, 'no_camera_info': 1})
    assert report.level == dg.ERROR and 'bad_image' in report.message
    assert report.as_dict()['errors: bad_image'] == '3' and report.as_dict()['errors'] == '4'
    # the same totals again: no new errors
    diag.frame_published({'inference_ms': 5.0}, 0.01, None, False)
    report = diag.report(errors={'bad_image': 3, 'no_camera_info': 1})
    assert report.level == dg.WARN and 'relative depth only' in report.message
    diag.frame_published({'inference_ms': 5.0}, 0.01, None, True)
    assert diag.report(errors={'bad_image': 3, 'no_camera_info': 1}).level == dg.OK
    report = diag.report(errors={'bad_image': 5, 'no_camera_info': 1})
    assert report.level == dg.WARN and '2 bad frames' in report.message
