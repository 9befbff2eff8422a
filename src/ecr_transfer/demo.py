"""`ecr-transfer demo`: the whole pipeline on local registries, for a first look and for CI.

Starts two real registries, writes sample images (one multi-arch), transfers them, runs again
to show that nothing is copied twice, and prints the ledger. No AWS account needed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from ecr_transfer.local.oci import Layer, write_image, write_index
from ecr_transfer.local.registry import LocalRegistry


def _build_images(layout: Path) -> dict[str, str]:
    """Sample images; `app` versions share a base layer like real images built FROM one base."""
    base = Layer.random(2 * 1024 * 1024, seed="demo-base")
    images = {
        "hello:1.0": write_image(layout, "hello", [Layer.text("hello.txt", "hello from ecr-transfer\n")]).digest,
        "app:1.0": write_image(layout, "app1", [base, Layer.text("app/version", "1.0\n")]).digest,
        "app:2.0": write_image(layout, "app2", [base, Layer.text("app/version", "2.0\n")]).digest,
        "multiarch:latest": write_index(
            layout,
            "multi",
            {
                ("linux", "amd64"): [base, Layer.text("arch", "amd64\n")],
                ("linux", "arm64"): [Layer.random(1024 * 1024, seed="demo-arm"), Layer.text("arch", "arm64\n")],
            },
        ).digest,
    }
    return images


def run_demo(main: Callable[[Sequence[str]], int], workdir: str | None = None) -> int:
    """Runs the CLI's own `main` (passed in, so the CLI imports the demo and not the reverse)."""
    root = Path(workdir or tempfile.mkdtemp(prefix="ecr-transfer-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    layout = root / "layout"
    print(f"demo workspace: {root}")
    with LocalRegistry() as src, LocalRegistry() as dst:
        print(f"source registry      http://{src.host}\ndestination registry http://{dst.host}")
        digests = _build_images(layout)
        layout_tags = {"hello:1.0": "hello", "app:1.0": "app1", "app:2.0": "app2", "multiarch:latest": "multi"}
        for name, tag in layout_tags.items():
            repo, repo_tag = name.split(":")
            src.push(layout, tag, f"demo/{repo}", repo_tag)
        config = root / "transfer.yaml"
        config.write_text(
            "# What ecr-transfer demo runs: Data Transfer Hub parameter names, a local destination.\n"
            "sourceType: Public\n"
            "srcList: SELECTED\n"
            "srcImageList: |\n"
            f"  {src.host}/demo/hello:1.0\n"
            f"  {src.host}/demo/multiarch          # no tag: latest\n"
            f"  {src.host}/demo/app:ALL_TAGS        # every tag, via the tag list API\n"
            "destType: Registry\n"
            f"destRegistry: {dst.host}\n"
            "destPrefix: mirror\n"
            f"insecureRegistries: [{src.host}, {dst.host}]\n",
            encoding="utf-8",
        )
        ledger = str(root / "ledger.db")
        print(f"\n== config {config}\n{config.read_text()}")
        print("== first run: copies everything")
        first = main(["run", "--config", str(config), "--ledger", ledger])
        print("\n== second run: nothing changed, so nothing is copied")
        second = main(["run", "--config", str(config), "--ledger", ledger])
        print("\n== ledger: runs")
        main(["status", "--ledger", ledger, "--runs"])
        print("\n== ledger: latest outcome per image")
        main(["status", "--ledger", ledger])
        mismatched = [
            name
            for name, digest in digests.items()
            if dst.manifest_digest(f"mirror/demo/{name.split(':')[0]}", name.split(":")[1]) != digest
        ]
    if mismatched:
        print(f"\nFAILED: destination digests differ for {', '.join(mismatched)}")
        return 1
    print("\nall destination digests equal the source digests (the multi-arch index included)")
    if workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    return first or second
