"""Drives a real node through a client generated from its OpenAPI document.

Called by scripts/openapi-client.sh with the generated package on sys.path:
    python3 openapi_client_drive.py BASE_URL TOKEN
Every call goes through the generated functions and models (no hand-built request); each
answer is checked, so a document that misdescribes the API fails here.
"""

import sys

from sorcha_client import AuthenticatedClient
from sorcha_client.api.blueprints import (
    deprecate_blueprint,
    get_blueprint,
    get_blueprint_history,
    list_blueprints,
    publish_blueprint,
    update_blueprint,
)
from sorcha_client.api.register import get_system_register, list_entries, verify_register
from sorcha_client.models import (
    DeprecateRequest,
    DeprecateRequestMetadata,
    EntryPage,
    EntryView,
    Problem,
    PublishRequest,
    PublishRequestDocument,
    UpdateRequest,
    UpdateRequestDocument,
)


def expect(value, kind, what):
    if not isinstance(value, kind):
        raise SystemExit(f"{what}: expected {kind.__name__}, got {value!r}")
    return value


def main(base, token):
    client = AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True)
    before = expect(get_system_register.sync(client=client), object, "register").head_version

    doc = PublishRequestDocument.from_dict({"title": "Generated", "steps": [1, 2]})
    published = expect(
        publish_blueprint.sync(client=client, body=PublishRequest(blueprint_id="gen-a", document=doc)),
        EntryView,
        "publish",
    )
    assert published.type_ == "published" and published.version == before + 1, published
    for other in ("gen-b", "gen-c"):
        expect(
            publish_blueprint.sync(
                client=client,
                body=PublishRequest(blueprint_id=other, document=PublishRequestDocument.from_dict({})),
            ),
            EntryView,
            f"publish {other}",
        )
    again = publish_blueprint.sync(
        client=client, body=PublishRequest(blueprint_id="gen-a", document=doc)
    )
    assert isinstance(again, Problem) and again.status == 409, again

    updated = expect(
        update_blueprint.sync(
            "gen-a",
            client=client,
            body=UpdateRequest(document=UpdateRequestDocument.from_dict({"title": "Generated v2"})),
        ),
        EntryView,
        "update",
    )
    assert updated.type_ == "updated" and updated.version == published.version + 3, updated

    got = expect(get_blueprint.sync("gen-a", client=client), EntryView, "get")
    assert got.version == updated.version, got
    assert got.document.to_dict() == {"title": "Generated v2"}, got.document
    missing = get_blueprint.sync("gen-none", client=client)
    assert isinstance(missing, Problem) and missing.status == 404, missing

    # Deprecate without a body, and with one.
    plain = expect(deprecate_blueprint.sync("gen-b", client=client), EntryView, "deprecate")
    assert plain.type_ == "deprecated" and not plain.is_active, plain
    meta = DeprecateRequestMetadata.from_dict({"reason": "replaced"})
    with_body = expect(
        deprecate_blueprint.sync("gen-c", client=client, body=DeprecateRequest(metadata=meta)),
        EntryView,
        "deprecate with a body",
    )
    assert with_body.metadata.to_dict() == {"reason": "replaced"}, with_body

    history = expect(get_blueprint_history.sync("gen-a", client=client), EntryPage, "history")
    assert [e.type_ for e in history.items] == ["published", "updated"], history

    # Lists and pages, following `next`.
    ids, cursor = [], None
    for _ in range(20):
        kwargs = {"limit": 2} if cursor is None else {"limit": 2, "cursor": cursor}
        page = expect(list_blueprints.sync(client=client, **kwargs), EntryPage, "list")
        ids += [e.blueprint_id for e in page.items]
        if not isinstance(page.next_, str):
            break
        cursor = page.next_
    assert {"gen-a", "gen-b", "gen-c"} <= set(ids), ids
    active = expect(list_blueprints.sync(client=client, active=False), EntryPage, "list inactive")
    assert {e.blueprint_id for e in active.items} >= {"gen-b", "gen-c"}, active

    versions, since = [], 0
    for _ in range(20):
        page = expect(list_entries.sync(client=client, since=since, limit=3), EntryPage, "entries")
        versions += [e.version for e in page.items]
        if not isinstance(page.next_, str):
            break
        since = int(page.next_)
    assert versions == list(range(1, len(versions) + 1)) and versions[-1] == with_body.version, versions

    verified = verify_register.sync(client=client)
    assert verified.ok and verified.checked == with_body.version, verified
    print(f"generated client: {len(versions)} entries written and read back, register verifies")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
