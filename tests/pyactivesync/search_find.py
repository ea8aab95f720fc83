"""Outside opinion on search: pyactivesync's search_mailbox (Search by date, and free text,
which it serves with Find), find_mailbox (Find) and search_gal.

Usage: search_find.py HOST:PORT USER PASSWORD DEVICE_ID
The INBOX holds "old capybara" (2019-01-01), "new capybara" (2024-01-01) and "something
else". Prints one line per check, "ok <name>", or raises.
"""
import os
import sys
import warnings

for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    os.environ.pop(var, None)
warnings.filterwarnings("ignore")

import pyactivesync  # noqa: E402
from pyactivesync.exceptions import StatusError  # noqa: E402

server, user, password, device_id = sys.argv[1:5]

with pyactivesync.Client(server, user, password, device_id=device_id, verify_ssl=False) as c:
    folders = {f.name: f for f in c.list_folders()}
    inbox = folders["Inbox"].id

    # Search with a GreaterThan on DateReceived: the 2024 mail and today's, newest first.
    found = c.search_mailbox(inbox, date_received_after="2020-01-01T00:00:00.000Z", max_results=10)
    subjects = [r.get("Email.Subject") for r in found]
    assert subjects == ["something else", "new capybara"], found
    assert all(r.get("Search.LongId") for r in found if r.get("Email.Subject")), found
    print("ok search_mailbox date")

    # Free text (pyactivesync sends it as a Find).
    found = c.search_mailbox(inbox, free_text="capybara", max_results=10)
    subjects = [r.get("Email.Subject") for r in found]
    assert subjects == ["new capybara", "old capybara"], found
    assert all(r["AirSync.ServerId"].startswith(inbox + ":") for r in found), found
    print("ok search_mailbox free_text")

    result = c.find_mailbox("capybara", deep_traversal=True, max_results=1)
    assert result.status == "1", result
    assert len(result.items) == 1, result
    item = result.items[0]
    assert item.fields.get("Email.Subject") == "new capybara", item
    assert item.collection_id == inbox, item
    assert item.fields.get("Find.HasAttachments") == "0", item
    print("ok find_mailbox")

    # No directory: a status, not an empty success and not an HTTP error.
    try:
        c.search_gal("anna")
    except StatusError as e:
        print(f"ok search_gal refused: {e}")
    else:
        raise AssertionError("search_gal succeeded without a directory")
