"""Reads a bucket prefix with a raw S3 client (boto3), as an operator of the backend could.

Usage: python s3_scan.py PREFIX CANARY [CANARY...]
Reads AWS_ENDPOINT, AWS_BUCKET, AWS_REGION and the credentials from the environment. Prints one
JSON object: every key under PREFIX, the bytes read, where each canary was found (object body,
user metadata, content type or key name), and the multipart uploads still pending under PREFIX.
"""

import json
import os
import sys

import boto3
from botocore.config import Config


def main() -> None:
    prefix, canaries = sys.argv[1], [c.encode() for c in sys.argv[2:]]
    s3 = boto3.client(
        "s3",
        endpoint_url=os.environ["AWS_ENDPOINT"],
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        config=Config(s3={"addressing_style": "path"}),
    )
    bucket = os.environ["AWS_BUCKET"]
    keys, hits, total = [], [], 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            keys.append(key)
            got = s3.get_object(Bucket=bucket, Key=key)
            body = got["Body"].read()
            total += len(body)
            places = {
                "body": body,
                "metadata": json.dumps(got.get("Metadata", {})).encode(),
                "content_type": got.get("ContentType", "").encode(),
                "key": key.encode(),
            }
            for canary in canaries:
                for where, data in places.items():
                    if canary in data:
                        hits.append({"key": key, "where": where, "canary": canary.decode()})
    uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
    print(json.dumps({"keys": keys, "bytes": total, "hits": hits, "pending_uploads": len(uploads)}))


if __name__ == "__main__":
    main()
