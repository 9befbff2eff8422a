"""The cloud-plan bench's own parts (bench/cloudplan.py, bench/asl_count.py): corpus shape, distinct
images, and the state transitions it reports, walked from the real definition."""

from __future__ import annotations

from bench import asl_count, cloudplan


def test_the_corpus_spreads_every_tag_over_the_repositories_with_a_digest_each() -> None:
    images = cloudplan.images_of(7, 100, "ecr/app")
    assert len(images) == 7 and sum(len(t) for t in images.values()) == 100
    digests = {cloudplan.manifest(repo, tag)[1] for repo, tags in images.items() for tag in tags}
    assert len(digests) == 100


def test_a_no_op_run_is_five_transitions_and_copies_add_the_same_few_per_map_child() -> None:
    counted = asl_count.transitions()
    assert counted["no_op"]["states"] == [
        "List images", "Anything to copy?", "Finish run", "Any failures?", "Run succeeded",
    ]  # fmt: skip
    copies = counted["copies"]
    assert copies["status"] == "SUCCEEDED" and copies["child_executions"] == 10
    assert copies["parent_states"][:3] == ["List images", "Anything to copy?", "Copy images"]
    assert {"Copy batch on Fargate", "Record outcome"} <= set(copies["child_states"])
    per_child = len(copies["child_states"])
    assert copies["transitions"] == len(copies["parent_states"]) + per_child * copies["child_executions"]
