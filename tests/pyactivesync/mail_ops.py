"""Outside opinion on mail: pyactivesync syncs, changes, fetches, moves and manages folders.

Usage: mail_ops.py HOST:PORT USER PASSWORD DEVICE_ID
The mailbox holds two mails in INBOX, one of them with an attachment "report.bin" whose bytes
are 0..255 repeated 40 times. Prints one line per check, "ok <name>" or raises.
"""
import os
import sys
import warnings

for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    os.environ.pop(var, None)
warnings.filterwarnings("ignore")

import pyactivesync  # noqa: E402
from pyactivesync import BodyType, EmailChange, FolderType  # noqa: E402

server, user, password, device_id = sys.argv[1:5]
expected_attachment = bytes(range(256)) * 40

with pyactivesync.Client(server, user, password, device_id=device_id, verify_ssl=False) as c:
    folders = {f.name: f for f in c.list_folders()}
    inbox = folders["Inbox"].id
    archive = folders["Archive"].id

    first = c.sync_folder(inbox)
    assert not first.added, "key 0 brings no items"
    estimate = c.get_item_estimate(inbox, first.sync_key)
    assert estimate == 2, f"estimate {estimate}"
    print("ok get_item_estimate")

    res = c.sync_folder(inbox, first.sync_key, window_size=10)
    subjects = sorted(i.fields.get("Email.Subject", "") for i in res.added)
    assert subjects == ["plain one", "with attachment"], subjects
    print("ok sync_folder")

    by_subject = {i.fields.get("Email.Subject"): i.server_id for i in res.added}
    changed = c.apply_email_changes(
        inbox, res.sync_key, [EmailChange(server_id=by_subject["plain one"], read=True, flagged=True)]
    )
    assert all(s == "1" for s in changed.statuses.values()), changed.statuses
    print("ok apply_email_changes")

    item = c.fetch_item(inbox, by_subject["with attachment"], body_type=BodyType(1))
    assert item.attachments, "attachment listed"
    data = c.fetch_attachment(item.attachments[0].file_reference)
    assert data == expected_attachment, f"attachment bytes differ ({len(data)} bytes)"
    print("ok fetch_item fetch_attachment")

    new_id = c.move_item(by_subject["plain one"], inbox, archive)
    assert new_id.startswith(archive + ":"), new_id
    print("ok move_item")

    # Pass 12 explicitly: pyactivesync's FolderType names are off by one from 12 up.
    folder = c.create_folder("Py Folder", "0", FolderType(12))
    c.update_folder(folder.id, "Py Folder Renamed")
    names = {f.name: f.id for f in c.list_folders()}
    assert names.get("Py Folder Renamed") == folder.id, names
    c.delete_folder(folder.id)
    assert "Py Folder Renamed" not in {f.name for f in c.list_folders()}
    print("ok folder create update delete")
