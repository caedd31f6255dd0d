"""Creates the demo's bucket and CloudFront distributions on the local moto server.

Run by scripts/demo.sh with the repo's .venv python (boto3 comes with moto). Prints
shell assignments of the distribution ids for the uploader's config.
"""
import os
import sys
import time

import boto3

endpoint = os.environ["AWS_ENDPOINT_URL"]
bucket = os.environ.get("SITE_BUCKET", "todo-site")
session = boto3.session.Session(region_name=os.environ.get("AWS_REGION", "us-east-1"))
s3 = session.client("s3", endpoint_url=endpoint)
cloudfront = session.client("cloudfront", endpoint_url=endpoint)

existing = [b["Name"] for b in s3.list_buckets().get("Buckets", [])]
if bucket not in existing:
    s3.create_bucket(Bucket=bucket)


def distribution(origin_path: str) -> str:
    config = {
        "CallerReference": f"demo-{origin_path}-{time.time()}",
        "Comment": f"todo site {origin_path}",
        "Enabled": True,
        "DefaultRootObject": "index.html",
        "Origins": {
            "Quantity": 1,
            "Items": [
                {
                    "Id": "site",
                    "DomainName": f"{bucket}.s3.amazonaws.com",
                    "OriginPath": origin_path,
                    "S3OriginConfig": {"OriginAccessIdentity": ""},
                }
            ],
        },
        "DefaultCacheBehavior": {
            "TargetOriginId": "site",
            "ViewerProtocolPolicy": "redirect-to-https",
            "MinTTL": 0,
            "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
            "TrustedSigners": {"Enabled": False, "Quantity": 0},
        },
    }
    return cloudfront.create_distribution(DistributionConfig=config)["Distribution"]["Id"]


print(f"export DEV_DISTRIBUTION_ID={distribution('/dev')}")
print(f"export PROD_DISTRIBUTION_ID={distribution('/prod')}")
print(f"export PREVIEW_DISTRIBUTION_ID={distribution('/previews')}")
sys.stdout.flush()
