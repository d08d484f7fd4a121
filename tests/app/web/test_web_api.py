"""The pages and their API on bundled models, and on a user's own models given to serve."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from seethrough.app.web import ServeConfig
from seethrough.testing import TinyCNN, seeded
from seethrough.testing.models import TinyGenerator

PAGES = ("/", "/explain", "/trust", "/atlas", "/latent", "/language", "/jobs")


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders(client, path):
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"></script>' in r.text and 'href="/static/style.css"' in r.text
    assert "http://" not in r.text.replace("http://127.0.0.1", "") and "https://" not in r.text  # nothing remote
    assert client.get("/static/app.js").status_code == 200 and client.get("/static/style.css").status_code == 200


def test_explain_a_dataset_image(client):
    body = {"image": {"index": 2}, "methods": ["saliency", "gradcam"], "target": "predicted"}
    r = client.post("/api/explain", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert [m["method"] for m in out["maps"]] == ["saliency", "gradcam"]
    assert out["prediction"]["label"] in ("circle", "square", "triangle", "cross")
    for m in out["maps"]:
        assert m["png"].startswith("data:image/png;base64,")
        assert set(m["scores"]) == {"deletion", "insertion", "relevance_mass_accuracy"}  # shapes bring masks
        assert all(0.0 <= v <= 1.0 for v in m["scores"].values())
    maps = load_file(Path(client.app.state.ctx.root) / out["download"].removeprefix("/files/"))
    assert set(maps) == {"saliency", "gradcam"} and maps["saliency"].shape == (1, 3, 64, 64)
    assert (
        client.get(out["download"]).content[:8]
        == Path(client.app.state.ctx.root, out["download"].removeprefix("/files/")).read_bytes()[:8]
    )
    # the same request again: the same maps (one file), another target: other maps
    again = client.post("/api/explain", json=body).json()
    assert again["download"] == out["download"] and again["maps"][0]["png"] == out["maps"][0]["png"]
    other = client.post("/api/explain", json={**body, "target": str((out["prediction"]["index"] + 1) % 4)}).json()
    assert other["download"] != out["download"] and other["maps"][0]["png"] != out["maps"][0]["png"]


def test_explain_the_same_as_the_library(client):
    """The page's maps are the library's: run_methods on the same image gives the same tensor."""
    from seethrough import zoo
    from seethrough.app.runs import run_methods

    out = client.post("/api/explain", json={"image": {"index": 0}, "methods": ["integrated_gradients"]}).json()
    data = client.app.state.ctx.gallery("shapes-cnn")
    model = zoo.load("shapes-cnn")
    ref = run_methods(model, data.images[:1], ["integrated_gradients"], target=out["prediction"]["index"])
    got = load_file(Path(client.app.state.ctx.root) / out["download"].removeprefix("/files/"))
    torch.testing.assert_close(got["integrated_gradients"], ref["integrated_gradients"].attributions)


def test_explain_an_upload(client):
    img = np.zeros((64, 64, 3), np.uint8)
    img[16:48, 16:48] = (240, 240, 240)  # a square
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    up = client.post("/api/upload", content=buf.getvalue()).json()
    r = client.post("/api/explain", json={"image": {"upload": up["upload"]}, "methods": ["saliency"]})
    assert r.status_code == 200 and r.json()["source"] == "uploaded image"
    assert set(r.json()["maps"][0]["scores"]) == {"deletion", "insertion"}  # no evidence mask for an upload
    bad = client.post("/api/explain", json={"image": {"upload": "0" * 64}, "methods": ["saliency"]})
    assert bad.status_code == 400 and "upload the image again" in bad.json()["detail"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"image": {"index": 0}, "methods": ["salincy"]}, "Did you mean 'saliency'"),
        ({"image": {"index": 999}}, "image index must be 0..23"),
        ({"image": {"index": 0}, "target": "7"}, "not a class of this model (0..3)"),
        ({"image": {"index": 0}, "target": "dog"}, "cannot read target 'dog'"),
        ({"image": "x.png"}, 'image must be {"index": i}'),
        ({"image": {"index": 0}, "methods": "saliency"}, "methods must be a list"),
        ({"image": {"index": 0}, "methods": ["gradcam"], "layer": "features.99"}, "features.9"),
    ],
)
def test_explain_bad_input(client, body, message):
    r = client.post("/api/explain", json=body)
    assert r.status_code == 400 and message in r.json()["detail"], r.json()


def test_latent_sliders_regenerate_the_image(client):
    m = client.get("/api/latent/methods", params={"generator": "scenes-gan"}).json()
    assert m["methods"] == ["sefa", "ganspace", "supervised"] and m["dim"] == 12
    d = client.get("/api/latent/directions", params={"generator": "scenes-gan", "method": "sefa"}).json()
    assert len(d["directions"]) == 5

    def image(s):
        r = client.get("/api/latent/image", params={"generator": "scenes-gan", "method": "sefa", "seed": 3, "s": s})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        return np.asarray(Image.open(io.BytesIO(r.content)))

    base, moved, same = image("0,0,0,0,0"), image("2.5,0,0,0,0"), image("")
    assert base.shape[0] >= 224 and np.array_equal(base, same) and not np.array_equal(base, moved)
    r = client.get("/api/latent/image", params={"generator": "scenes-gan", "method": "sefa", "s": "9"})
    assert r.status_code == 400 and "±5" in r.json()["detail"]
    r = client.get("/api/latent/directions", params={"generator": "scenes-gan", "method": "traversal"})
    assert r.status_code == 400 and "sefa, ganspace, supervised" in r.json()["detail"]


def test_vae_traversal(client):
    m = client.get("/api/latent/methods", params={"generator": "mnist-vae"}).json()
    assert m["kind"] == "autoencoder" and m["methods"] == ["traversal", "pca"]
    a = client.get("/api/latent/image", params={"generator": "mnist-vae", "method": "traversal", "s": "0"})
    b = client.get("/api/latent/image", params={"generator": "mnist-vae", "method": "traversal", "s": "3"})
    assert a.status_code == b.status_code == 200 and a.content != b.content


@pytest.mark.slow
def test_peptide_interpolation_table(client):
    r = client.post("/api/peptides/interpolate", json={"a": "GLFDIVKKVVGALGSL", "b": "KWKLFKKIEKVGQNIRDG", "steps": 5})
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["columns"][:3] == ["alpha", "sequence", "valid"] and len(t["rows"]) == 5
    assert t["rows"][0][0] == 0.0 and t["rows"][-1][0] == 1.0
    assert {"charge", "hydrophobic_moment", "amp_z", "amp_seq"} <= set(t["columns"])
    r = client.post("/api/peptides/interpolate", json={"a": "", "b": "KWK"})
    assert r.status_code == 400 and "give peptide sequence a" in r.json()["detail"]


def test_language_views(client):
    prompt = "k1 = 2 ; k3 = 5 ; k1 ->"
    r = client.post("/api/language/explain", json={"prompt": prompt, "methods": ["saliency", "atman"], "generate": 2})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["html"].count('class="st-token"') >= 2 * 9 and out["generation_html"] and out["generated"]
    assert set(out["top"]) == {"saliency", "atman"}
    lens = client.post("/api/language/lens", json={"prompt": prompt}).json()
    assert len(lens["probability"]) == len(lens["layers"]) and lens["html"]
    patch = client.post("/api/language/patch", json={"prompt": prompt}).json()
    assert 0 <= patch["corrupted_prob"] <= 1 and patch["html"]
    bad = client.post("/api/language/explain", json={"prompt": prompt, "methods": ["saliencyy"]})
    assert bad.status_code == 400 and "saliency" in bad.json()["detail"]


# ------------------------------------------------------------------------------ a user's models
@pytest.fixture(scope="module")
def user_models(tmp_path_factory):
    from seethrough.testing.language import tiny_llama

    root = tmp_path_factory.mktemp("web-user")
    save_file(seeded(TinyCNN).state_dict(), str(root / "cnn.safetensors"))
    save_file({"x": torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))}, str(root / "x.safetensors"))
    g = seeded(TinyGenerator)
    save_file(g.state_dict(), str(root / "gen.safetensors"))
    tiny = tiny_llama(seed=3)
    tiny.model.save_pretrained(root / "llama")
    tiny.tokenizer.save_pretrained(root / "llama")
    return root


def test_every_page_on_a_users_models(user_models, tmp_path, make_client, job_waiter):
    root = user_models
    cfg = ServeConfig(
        out=str(tmp_path / "out"),
        port=8765,
        model="seethrough.testing.models:TinyCNN",
        weights=str(root / "cnn.safetensors"),
        size=16,
        data=(str(root / "x.safetensors"),),
        layer="features.3",
        text_model=str(root / "llama"),
        generator="seethrough.testing.models:TinyGenerator",
        generator_weights=str(root / "gen.safetensors"),
    )
    with make_client(cfg) as c:
        for path in PAGES:
            assert c.get(path).status_code == 200, path
        key = cfg.model
        r = c.post("/api/explain", json={"model": key, "image": {"index": 1}, "methods": ["saliency", "gradcam"]})
        assert r.status_code == 200, r.text
        assert r.json()["layer"] == "features.3" and len(r.json()["maps"]) == 2
        job = c.post("/api/jobs", json={"kind": "trust", "params": {"model": key, "n": 2, "methods": ["saliency"],
                     "families": ["faithfulness"], "randomization": False}}).json()  # fmt: skip
        done = job_waiter(c, job["id"])
        assert done["state"] == "done", done
        assert c.get(f"/trust/{job['id']}").status_code == 200
        assert c.get(f"/files/{done['result']['files'][0]}").status_code == 200
        atlas = c.post("/api/jobs", json={"kind": "atlas", "params": {"model": key, "n": 6, "steps": 0}}).json()
        built = job_waiter(c, atlas["id"])
        assert built["state"] == "done" and built["result"]["summary"]["layers"] == ["features.0", "features.3"], built
        assert c.get(built["result"]["view"]).status_code == 200
        m = c.get("/api/latent/methods", params={"generator": cfg.generator}).json()
        assert m["methods"] == ["sefa", "ganspace"] and m["dim"] == 8
        a = c.get("/api/latent/image", params={"generator": cfg.generator, "method": "sefa", "s": "0"})
        b = c.get("/api/latent/image", params={"generator": cfg.generator, "method": "sefa", "s": "3"})
        assert a.status_code == 200 and a.content != b.content
        lens = c.post("/api/language/lens", json={"model": cfg.text_model, "prompt": "k1 = 2 ; k1 ->"})
        assert lens.status_code == 200, lens.text


# ------------------------------------------------------------------------------ jobs
def test_jobs_persist_and_their_outputs_are_served_after_a_restart(config, make_client, job_waiter):
    params = {"n": 3, "methods": ["saliency", "gradcam"], "families": ["faithfulness", "localization"],
              "randomization": True}  # fmt: skip
    with make_client(config) as c:
        job = c.post("/api/jobs", json={"kind": "trust", "params": params})
        assert job.status_code == 202, job.text
        done = job_waiter(c, job.json()["id"])
        assert done["state"] == "done" and done["progress"] == 1.0, done
        view = c.get(f"/trust/{done['id']}").text
        assert "Ranking" in view and "faithfulness (mean rank)" in view and "<iframe" in view
    with make_client(config) as c:  # a new server on the same folder
        listed = c.get("/api/jobs").json()
        assert [j["id"] for j in listed] == [done["id"]] and listed[0]["state"] == "done"
        html, st = listed[0]["result"]["files"]
        assert "model_randomization" in c.get(f"/files/{html}").text or "randomization" in c.get(f"/files/{html}").text
        from seethrough.evaluation import TrustReport

        report = TrustReport.load(Path(config.out) / st)
        assert report.methods == ("saliency", "gradcam")
        assert done["id"] in c.get("/trust").text


def test_dataset_pass_and_cancel(config, make_client, job_waiter):
    with make_client(config) as c:
        r = c.post("/api/jobs", json={"kind": "dataset", "params": {"n": 40, "shard_size": 10,
                   "settings": {"method": "saliency"}}})  # fmt: skip
        done = job_waiter(c, r.json()["id"])
        assert done["state"] == "done" and done["result"]["summary"] == {"shards": 4, "samples": 40}
        from seethrough.app.jobs import load_outputs

        out = load_outputs(Path(config.out) / "jobs" / done["id"] / "shards")
        assert out["attributions"].shape[0] == 40
        long = c.post("/api/jobs", json={"kind": "dataset", "params": {"n": 4000, "shard_size": 8,
                      "settings": {"method": "integrated_gradients", "steps": 32}}}).json()  # fmt: skip
        job_waiter(c, long["id"], states=("running",))
        c.post(f"/api/jobs/{long['id']}/cancel")
        got = job_waiter(c, long["id"])
        assert got["state"] == "cancelled" and got["progress"] < 1
        bad = c.post("/api/jobs", json={"kind": "dataset", "params": {"settings": {"method": "saliency", "stepz": 3}}})
        assert bad.status_code == 400 and "stepz" in bad.json()["detail"]


def test_a_full_queue_answers_503_and_queues_nothing(tmp_path, make_client):
    cfg = ServeConfig(out=str(tmp_path / "out"), port=8765, max_queued=0)
    with make_client(cfg) as c:
        r = c.post("/api/jobs", json={"kind": "dataset", "params": {"n": 8, "settings": {"method": "saliency"}}})
        assert r.status_code == 503 and r.headers["retry-after"] == "10"
        assert "already waiting" in r.json()["detail"] and r.json()["error"] == "QueueFull"
        assert c.get("/api/jobs").json() == []
