"""What the client scripts here share: reading back through Sluice's query API."""

import json
import urllib.parse
import urllib.request


def query(url, token, **params):
    """The JSON answer of GET /api/v1/query with `params`."""
    q = urllib.parse.urlencode(params)
    req = urllib.request.Request(f"{url}/api/v1/query?{q}", headers={"Authorization": f"Token {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)
