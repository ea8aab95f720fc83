"""Outside opinion: pyactivesync provisions and lists folders against a running gateway.

Usage: provision_and_folders.py HOST:PORT USER PASSWORD DEVICE_ID
Prints one JSON object: the policy key and the folders as pyactivesync parsed them.
"""
import json
import os
import sys
import warnings

# This machine's CA bundle variables make `requests` ignore verify=False.
for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    os.environ.pop(var, None)
warnings.filterwarnings("ignore")

import pyactivesync  # noqa: E402

server, user, password, device_id = sys.argv[1:5]
with pyactivesync.Client(server, user, password, device_id=device_id, verify_ssl=False) as c:
    key = c.provision()
    folders = c.list_folders()
    print(json.dumps({
        "policy_key": key,
        "folders": [
            {"id": f.id, "parent": f.parent_id, "type": int(f.type), "name": f.name}
            for f in folders
        ],
    }))
