"""Results kept in the workspace (``detector.results``): one naming scheme, versioned
documents, and the CLI and the dashboard reading each other's transfer matrices, audits and
robustness sweeps."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from test_audit import _image, _save
from test_cli_detect import TINY, build_workspace

from detector import results
from detector.audit import audit, audit_table, display_table, value_text
from detector.cli import main
from detector.extract import embed_dataset
from detector.perturb import stored_robustness
from detector.store import Workspace
from ui import adapters, analysis, tasks


class _Job:
    """The part of ``ui.jobs.Job`` the dashboard's job functions use."""

    cancel_requested = False

    def update(self, *args, **kwargs) -> None:
        pass

    def check(self) -> None:
        pass

    def should_stop(self) -> bool:
        return False


def test_the_naming_scheme():
    key = results.result_key("transfer", backbone=TINY, head_type="linear", pairing="shared")
    assert key == "transfer:tiny-clip/random|linear|shared"
    assert results.result_key("audit", scope="workspace") == "audit:workspace"
    sweep = results.result_key(
        "robustness", head="probe", backbone=TINY, split=None, pairing="matched"
    )
    assert sweep == "robustness:probe|tiny-clip/random|all|matched"
    with pytest.raises(results.ResultKeyError, match="unknown result kind 'matrix'"):
        results.result_key("matrix", backbone=TINY)
    with pytest.raises(results.ResultKeyError, match="keyed by backbone, head_type, pairing"):
        results.result_key("transfer", backbone=TINY, head_type="linear")
    with pytest.raises(results.ResultKeyError, match=r"contains '\|'"):
        results.result_key("audit", scope="a|b")


def test_documents_are_versioned_and_other_versions_ignored(tmp_path):
    with Workspace(tmp_path / "ws") as ws:
        doc = results.save_result(ws, "audit", {"fingerprint": "f"}, scope="workspace")
        assert doc["version"] == results.VERSION and doc["kind"] == "audit"
        assert doc["key"] == {"scope": "workspace"}
        stored = ws.get_json(results.NAMESPACE, "audit:workspace")
        assert stored["data"] == {"fingerprint": "f"}
        assert results.load_result(ws, "audit", scope="workspace")["data"] == {"fingerprint": "f"}
        ws.put_json(results.NAMESPACE, "audit:workspace", {**stored, "version": 99})
        assert results.load_result(ws, "audit", scope="workspace") is None
        assert results.stored_audit(ws) is None  # a newer release's document: no crash
        ws.put_json(results.NAMESPACE, "audit:workspace", "not a document")
        assert results.list_results(ws, "audit") == []


def test_documents_of_the_earlier_dashboard_namespaces_are_read(tmp_path):
    table = [{"train_group": "SD", "test_group": "SD", "mAP": 0.9}]
    with Workspace(tmp_path / "ws") as ws:
        ws.put_json(
            "dashboard_transfer",
            f"{TINY}|linear|shared",
            {"created": 1.0, "n_images": 4, "head_type": "linear", "pairing": "shared",
             "table": table},
        )  # fmt: skip
        found = analysis.stored_transfer(ws, TINY, "linear", "shared")
        assert found["table"] == table and found["n_images"] == 4
        assert analysis.stored_transfer(ws, TINY, "orthogonal", "shared") is None
        # a current document of the same key wins over the old one
        results.save_transfer(
            ws, pd.DataFrame(table[:0]), backbone_id=TINY, head_type="linear",
            pairing="shared", train="all", test="each",
        )  # fmt: skip
        assert results.stored_transfer(ws, TINY, "linear", "shared")["table"] == []
        ws.put_json("dashboard_audit", "latest", {"report": {}})  # damaged: ignored
        assert results.stored_audit(ws) is None


def test_a_cli_matrix_shows_on_the_dashboard_and_the_reverse(tmp_path, capsys):
    ws_path = str(build_workspace(tmp_path / "ws"))
    args = ["matrix", "--workspace", ws_path, "--train", "ProGAN,all", "--bootstrap", "0"]
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kept_as"] == f"transfer:{TINY}|linear|shared"
    with Workspace(ws_path) as ws:
        shown = analysis.stored_transfer(ws, TINY, "linear", "shared")  # the Generators page
    assert shown["train"] == "ProGAN,all" and shown["test"] == "each"
    cells = {(c["train_group"], c["test_group"]): c["mAP"] for c in out["cells"]}
    assert {(c["train_group"], c["test_group"]): c["mAP"] for c in shown["table"]} == cells

    # the dashboard's job keeps its matrix in the same place, under the same key
    tasks.transfer_job(_Job(), ws_path, TINY, "linear", "matched")
    with Workspace(ws_path) as ws:
        keys = [d["key"]["pairing"] for d in results.list_results(ws, "transfer")]
        kept = results.stored_transfer(ws, TINY, "linear", "matched")
    assert keys == ["matched", "shared"]
    assert kept["train"] == "ProGAN,SD,unknown,all"  # one head per generator, one on all
    assert {r["train_group"] for r in kept["table"]} == {"ProGAN", "SD", "unknown", "all"}


def _audited_workspace(tmp_path, tiny_backbone):
    from detector.datasets import load_dataset

    data = tmp_path / "data"
    for i in range(4):
        _save(_image(i), data / "real" / f"{i}.jpg", quality=95)
        _save(_image(50 + i), data / "gan" / f"{i}.jpg", quality=60)
    with Workspace(tmp_path / "ws") as ws:
        embed_dataset(load_dataset(data), ws, tiny_backbone, workers=0)
    return tmp_path / "ws"


def test_a_cli_audit_shows_on_the_data_page_and_the_reverse(tmp_path, tiny_backbone, capsys):
    ws_path = _audited_workspace(tmp_path, tiny_backbone)
    assert main(["audit", str(ws_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kept_in_workspace"] and out["flagged"] >= 1
    with Workspace(ws_path) as ws:
        stored = analysis.stored_audit(ws)  # what the Data page reads
        current = analysis.audit_fingerprint(ws, ws.images())
    assert stored.fingerprint == current  # the page shows it as up to date
    assert stored.report.warnings == out["warnings"]
    assert len(stored.report.images) == 8 and stored.report.source == out["source"]

    # a dataset folder is not a workspace: nothing is kept anywhere
    assert main(["audit", str(tmp_path / "data"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kept_in_workspace"] is False

    # the Data page's audit lands where the library (and so the CLI) reads it
    with Workspace(ws_path) as ws:
        ws.put_json(results.NAMESPACE, "audit:workspace", None)
        assert results.stored_audit(ws) is None
        tasks.run_audit(ws, "fp")
        assert results.stored_audit(ws).fingerprint == "fp"


def test_the_cli_and_the_dashboard_word_a_finding_alike(tmp_path):
    for i in range(4):
        _save(_image(i), tmp_path / "real" / f"{i}.jpg", quality=95)
        _save(_image(50 + i), tmp_path / "gan" / f"{i}.jpg", quality=60)
    report = audit(tmp_path)
    (warning,) = [w for w in report.warnings if w["property"] == "jpeg_quality"]
    shown = adapters.audit_display_table(audit_table(report))  # the Data page's table
    row = shown[shown["property"] == "jpeg quality"].iloc[0]
    assert row["typical real"] == "quality 95" and row["typical synthetic"] == "quality 60"
    assert f"typical real {row['typical real']}" in warning["message"]
    assert f"typical synthetic {row['typical synthetic']}" in warning["message"]
    assert adapters.audit_display_table is display_table  # no copy of the wording in ui
    quality = audit_table(report).query("scope == 'all' and property == 'jpeg_quality'")
    sentence = adapters.audit_row_text(quality.iloc[0])
    assert sentence.startswith("Across all images, the jpeg quality is typically quality 95")
    assert value_text("width", float("inf")) == "n/a" and value_text("format", "PNG") == "PNG"


def test_legacy_robustness_sweeps_still_show(tmp_path):
    doc = {
        "head": "probe", "backbone": TINY, "split": None, "pairing": "shared",
        "threshold": 0.5, "summary": [], "table": [],
    }  # fmt: skip
    with Workspace(tmp_path / "ws") as ws:
        ws.put_json("robustness", f"probe|{TINY}|all|shared", doc)
        (old,) = stored_robustness(ws, head="probe")
        assert old.head == "probe" and old.split is None
        results.save_result(
            ws, "robustness", {**doc, "threshold": 0.7}, head="probe", backbone=TINY,
            split=None, pairing="shared",
        )  # fmt: skip
        (new,) = stored_robustness(ws)
        assert new.threshold == 0.7
        assert stored_robustness(ws, head="other") == []
