"""JobSpec: validation with clear errors, JSON round trip, and the fingerprint."""

from __future__ import annotations

import pytest

from seethrough._core.errors import ConfigError, InputError
from seethrough.app.jobs import JobSpec, plan_job


def test_round_trip_and_fingerprint(tmp_path, user, spec_kwargs):
    root, _ = user
    s = JobSpec(**spec_kwargs(root, out=str(tmp_path / "a")))
    again = JobSpec.from_json(s.to_json())
    assert again == s and again.fingerprint() == s.fingerprint()
    # the output directory does not decide the outputs; the settings and the seed do
    assert JobSpec(**spec_kwargs(root, out=str(tmp_path / "b"))).fingerprint() == s.fingerprint()
    assert JobSpec(**spec_kwargs(root, out="x", seed=1)).fingerprint() != s.fingerprint()
    changed = spec_kwargs(root, out="x", settings={"method": "integrated_gradients", "steps": 9})
    assert JobSpec(**changed).fingerprint() != s.fingerprint()


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(task="explian"), "Did you mean 'explain'"),
        (dict(out=""), "output directory"),
        (dict(shard_size=0), "shard_size"),
        (dict(n=0), "positive"),
        (dict(data=None), "needs data"),
        (dict(settings={"method": object()}), "plain values"),
    ],
)
def test_bad_specs_are_refused(user, change, message, spec_kwargs):
    root, _ = user
    kw = spec_kwargs(root, out="o")
    kw.update(change)
    with pytest.raises(ConfigError, match=message):
        JobSpec(**kw)


def test_sample_takes_n_not_data():
    with pytest.raises(ConfigError, match="not --data"):
        JobSpec(task="sample", model="peptide-wae", data="shapes", out="o", n=5)
    with pytest.raises(ConfigError, match="needs n"):
        JobSpec(task="sample", model="peptide-wae", out="o")


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"method": "integrated_gradient"}, "Did you mean 'integrated_gradients'"),
        ({"method": "integrated_gradients", "n_steps": 8}, "Did you mean 'steps'"),
        ({"method": "smoothgrad", "seed": 3}, "job's seed"),
        ({}, "needs settings\\['method'\\]"),
    ],
)
def test_bad_settings_are_refused_on_the_driver(tmp_path, user, settings, message, spec_kwargs):
    root, _ = user
    with pytest.raises(ConfigError, match=message):
        plan_job(JobSpec(**spec_kwargs(root, out=str(tmp_path / "o"), settings=settings)))
    assert not (tmp_path / "o").exists()  # nothing written before the spec is known good


def test_data_with_no_files(tmp_path, user, spec_kwargs):
    root, _ = user
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(InputError, match="no image files .* and no tensor shards"):
        plan_job(JobSpec(**spec_kwargs(root, out=str(tmp_path / "o"), data=str(tmp_path / "empty"))))
    with pytest.raises(InputError, match="does not exist"):
        plan_job(JobSpec(**spec_kwargs(root, out=str(tmp_path / "o"), data=str(tmp_path / "missing"))))
