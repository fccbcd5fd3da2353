"""Drives the sandbox with Mailchimp's own Python client library (mailchimp-marketing).

Run by the sandbox test `mailchimps_python_client_library_works_against_the_sandbox` with
SANDBOX_API (the sandbox's /3.0 URL), SANDBOX_KEY and SANDBOX_LIST in the environment.
Exits non-zero with a message on the first check that fails.
"""
import hashlib
import json
import os
import sys

import mailchimp_marketing as MailchimpMarketing
from mailchimp_marketing.api_client import ApiClientError


def check(condition, message):
    if not condition:
        print("FAILED:", message)
        sys.exit(1)


client = MailchimpMarketing.Client()
client.set_config({"api_key": os.environ["SANDBOX_KEY"]})
client.api_client.host = os.environ["SANDBOX_API"]
list_id = os.environ["SANDBOX_LIST"]

check(client.ping.get()["health_status"] == "Everything's Chimpy!", "ping")
check(client.lists.get_list(list_id)["id"] == list_id, "get_list")

result = client.lists.batch_list_members(list_id, {
    "members": [
        {"email_address": "ada@northwind.io", "status": "subscribed", "merge_fields": {"FNAME": "Ada"}},
        {"email_address": "lee@northwind.io", "status": "unsubscribed"},
    ],
    "update_existing": True,
})
check(result["total_created"] == 2, "batch_list_members created two: %s" % json.dumps(result))

lee = hashlib.md5(b"lee@northwind.io").hexdigest()
try:
    client.lists.set_list_member(list_id, lee, {"email_address": "lee@northwind.io", "status": "subscribed"})
    check(False, "re-subscribing an unsubscribed member must fail")
except ApiClientError as error:
    body = json.loads(error.text)
    check(error.status_code == 400 and body["title"] == "Member In Compliance State", "compliance error: %s" % error.text)

kept = client.lists.set_list_member(list_id, lee, {"email_address": "lee@northwind.io", "status_if_new": "subscribed"})
check(kept["status"] == "unsubscribed", "status_if_new leaves an existing member's status")

segment = client.lists.create_segment(list_id, {"name": "From Python", "static_segment": ["ada@northwind.io"]})
client.lists.batch_segment_members({"members_to_add": ["lee@northwind.io"]}, list_id, segment["id"])
members = client.lists.get_list_members_info(list_id, count=1000)
check(members["total_items"] == 2, "two members listed")
tagged = [m["email_address"] for m in members["members"] if m["tags_count"] == 1]
check(sorted(tagged) == ["ada@northwind.io", "lee@northwind.io"], "both tagged: %s" % tagged)

# Tags travel in the batch itself, for new and existing members; a missing tag is created.
result = client.lists.batch_list_members(list_id, {
    "members": [
        {"email_address": "ada@northwind.io", "status": "subscribed", "tags": ["VIP", "From Python"]},
        {"email_address": "zoe@northwind.io", "status": "subscribed", "tags": ["VIP"]},
    ],
    "update_existing": True,
})
check(result["total_created"] == 1 and result["total_updated"] == 1, "batch with tags: %s" % json.dumps(result))
ada = client.lists.get_list_member(list_id, hashlib.md5(b"ada@northwind.io").hexdigest())
check(sorted(t["name"] for t in ada["tags"]) == ["From Python", "VIP"], "ada's tags: %s" % ada["tags"])
zoe = client.lists.get_list_member(list_id, hashlib.md5(b"zoe@northwind.io").hexdigest())
check([t["name"] for t in zoe["tags"]] == ["VIP"], "zoe's tags: %s" % zoe["tags"])

print("official Python client: all checks passed")
