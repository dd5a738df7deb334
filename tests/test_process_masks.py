"""convert/process/masks.py: CT body mask (table excluded), head-CT brain mask, apply_mask."""

from __future__ import annotations

import numpy as np

from convert.process import apply_mask, body_mask, brain_mask
from convert.volume import Meta, Volume


def ct_with_table_and_marker(touching: bool = False) -> tuple[Volume, np.ndarray]:
    """A 64x64x24 CT (1 x 1 x 2 mm): body ellipse with lungs, a table below it, a text marker in a corner.

    Returns the volume and the true body mask (lungs filled). ``touching``: a 1-voxel
    cushion bridges the body and the table.
    """
    x, y = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    body2d = ((x - 32) / 22.0) ** 2 + ((y - 28) / 16.0) ** 2 <= 1
    lungs2d = (((x - 24) / 5.0) ** 2 + ((y - 28) / 7.0) ** 2 <= 1) | (((x - 40) / 5.0) ** 2 + ((y - 28) / 7.0) ** 2 <= 1)
    hu = np.full((64, 64, 24), -1000, np.int16)
    body = np.zeros(hu.shape, bool)
    body[:, :, 2:22] = body2d[..., None]
    hu[body] = 40
    hu[:, :, 2:22][lungs2d] = -850
    hu[8:56, 48:51, :] = 300  # the table: a slab below the patient (j increases towards posterior here)
    if touching:
        hu[32, 44:48, 2:22] = 30
    hu[58:61, 2:6, 10:12] = 2000  # burned-in text marker: small, bright, far from the body
    affine = np.diag([1.0, -1.0, 2.0, 1.0])  # j points posterior: the table is at high j
    return Volume(hu, affine, Meta(modality="CT", units="HU")), body


def test_body_mask_excludes_table_and_marker_and_fills_lungs():
    v, truth = ct_with_table_and_marker()
    mask = body_mask(v).voxels().astype(bool)
    assert mask.dtype == bool and mask.shape == v.shape
    assert not mask[8:56, 48:51, :].any(), "the table is inside the body mask"
    assert not mask[58:61, 2:6, 10:12].any()
    assert np.array_equal(mask, truth)


def test_body_mask_excludes_a_table_touching_the_body_through_a_cushion():
    v, truth = ct_with_table_and_marker(touching=True)
    mask = body_mask(v).voxels().astype(bool)
    assert not mask[8:56, 48:51, :].any(), "the table is inside the body mask"
    assert (mask & truth).sum() / truth.sum() > 0.98


def test_brain_mask_keeps_the_brain_inside_the_skull_only():
    x, y, z = np.meshgrid(np.arange(48), np.arange(48), np.arange(40), indexing="ij")
    r = np.sqrt(((x - 24) / 20.0) ** 2 + ((y - 24) / 20.0) ** 2 + ((z - 20) / 17.0) ** 2)
    hu = np.full(r.shape, -1000, np.int16)
    hu[r <= 1.0] = 40  # scalp and muscle (soft tissue, inside the brain window)
    hu[r <= 0.9] = 900  # skull
    hu[r <= 0.8] = 30  # brain
    hu[(r <= 0.3) & (x < 24)] = 8  # a ventricle (CSF)
    v = Volume(hu, np.eye(4), Meta(modality="CT", units="HU"))
    mask = brain_mask(v).voxels().astype(bool)
    truth = r <= 0.8
    assert not mask[(r > 0.9) & (r <= 1.0)].any(), "scalp inside the brain mask"
    assert (mask & truth).sum() / truth.sum() > 0.97
    assert mask[24, 24, 20]  # the ventricle is inside


def test_apply_mask_sets_background_to_air_and_keeps_dtype():
    v, truth = ct_with_table_and_marker()
    out = apply_mask(v, body_mask(v))
    assert out.dtype == np.int16
    assert np.all(out.voxels()[~truth] == -1024)
    assert np.array_equal(out.voxels()[truth], v.voxels()[truth])
    assert out.history[-1]["step"] == "apply_mask"
    assert v.voxels()[0, 0, 0] == -1000  # the input is untouched
