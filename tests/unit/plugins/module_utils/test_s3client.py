"""s3client: SigV4 signing, listing parsing, ETag kinds, and endpoints built from a location."""

import calendar
import datetime
import socket

import pytest

from ansible_collections.auditron.dr.plugins.module_utils import s3client, storage
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
AWS_DOC_KEYS = ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")


def aws_example_server():
    credentials = s3client._Credentials(AWS_DOC_KEYS[0], AWS_DOC_KEYS[1], None, "test")  # pylint: disable=protected-access
    return s3client._Server("https://examplebucket.s3.amazonaws.com", "us-east-1", credentials, None, True, 5, 1)  # pylint: disable=protected-access


EXAMPLE_TIME = calendar.timegm(datetime.datetime(2013, 5, 24, 0, 0, 0).timetuple())


@pytest.mark.parametrize("path,query,headers,signed,signature", [
    # The examples of the AWS S3 SigV4 documentation ("Examples of signature calculations").
    ("/test.txt", "", {"range": "bytes=0-9"}, "host;range;x-amz-content-sha256;x-amz-date",
     "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
    ("/", "lifecycle=", {}, "host;x-amz-content-sha256;x-amz-date",
     "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
    ("/", "max-keys=2&prefix=J", {}, "host;x-amz-content-sha256;x-amz-date",
     "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
])
def test_sigv4_matches_the_aws_documentation(path, query, headers, signed, signature):
    result = aws_example_server().sign("GET", path, query, dict(headers), payload_hash=EMPTY_SHA256, now=EXAMPLE_TIME)
    assert result["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=%s, Signature=%s" % (signed, signature))


def test_list_page_is_parsed_and_url_decoded():
    page = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>b</Name><Prefix>files%2Fcurrent%2F</Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys>
  <EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>
  <NextContinuationToken>tok+en</NextContinuationToken>
  <Contents><Key>files%2Fcurrent%2Fa+b.pdf</Key><Size>12</Size><ETag>&quot;0cc175b9c0f1b6a831c399e269772661&quot;</ETag></Contents>
  <Contents><Key>files%2Fcurrent%2F100%25%2B.txt</Key><Size>0</Size><ETag>"d41d8cd98f00b204e9800998ecf8427e-2"</ETag></Contents>
  <Contents><Key>files%2Fcurrent%2F%C3%A9</Key><Size>3</Size><ETag>"x"</ETag></Contents>
  <CommonPrefixes><Prefix>files%2Fcurrent%2Fdir%2F</Prefix></CommonPrefixes>
</ListBucketResult>"""
    entries, prefixes, token = s3client.parse_list_page(page, len("files/current/"))
    assert entries == [s3client.Entry("a b.pdf", 12, "0cc175b9c0f1b6a831c399e269772661"),
                       s3client.Entry("100%+.txt", 0, "d41d8cd98f00b204e9800998ecf8427e-2"),
                       s3client.Entry("é", 3, "x")]
    assert prefixes == ["dir/"]
    assert token == "tok+en"


def test_plain_md5_etags_are_told_from_multipart_ones():
    assert s3client.is_plain_md5("0cc175b9c0f1b6a831c399e269772661")
    assert not s3client.is_plain_md5("0cc175b9c0f1b6a831c399e269772661-3")
    assert not s3client.is_plain_md5("")
    assert not s3client.is_plain_md5(None)


def test_sse_kms_is_asked_for_on_every_upload():
    endpoint = s3client.S3Endpoint.from_params(
        {"name": "aws", "bucket": "b", "region": "eu-west-1", "access_key": "AKIA", "secret_key": "s",
         "sse": "aws:kms", "sse_kms_key_id": "alias/files"}, "destination")
    assert endpoint.sse_headers == {"x-amz-server-side-encryption": "aws:kms",
                                    "x-amz-server-side-encryption-aws-kms-key-id": "alias/files"}
    headers = endpoint._put_headers({"sha256": "abc"}, "application/pdf")  # pylint: disable=protected-access
    assert headers["x-amz-server-side-encryption"] == "aws:kms" and headers["x-amz-meta-sha256"] == "abc"
    assert endpoint.location.endpoint_label == "https://s3.eu-west-1.amazonaws.com/b"
    with pytest.raises(DRError, match="bucket is required"):
        s3client.S3Endpoint.from_params({"name": "x"}, "destination")
    with pytest.raises(DRError, match="only S3 locations"):
        s3client.S3Endpoint.from_params({"name": "x", "type": "local", "path": "/tmp"}, "destination")


def test_an_endpoint_takes_the_location_storage_parsed_and_never_makes_its_boto3_client():
    location = storage.location_from_params(
        {"name": "minio", "bucket": "b", "endpoint_url": "https://minio:9000", "prefix": "/files/",
         "access_key": "k", "secret_key": "s", "validate_certs": False}, "source")
    endpoint = s3client.S3Endpoint.from_params(location, "source")
    assert endpoint.location is location and endpoint.prefix == "files"
    assert endpoint.server.url == "https://minio:9000" and endpoint.describe() == "minio (https://minio:9000/b/files)"
    assert location._client is None  # pylint: disable=protected-access
    with pytest.raises(DRError, match=r"source \(disk\): only S3 locations can be mirrored, got type local"):
        s3client.S3Endpoint.from_params(storage.location_from_params({"name": "disk", "type": "local", "path": "/tmp"}),
                                        "source")


def test_an_endpoint_that_refuses_connections_is_retried_then_reported_as_down(monkeypatch):
    waits = []
    monkeypatch.setattr(s3client, "backoff", waits.append)
    with socket.socket() as probe:      # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = s3client.S3Endpoint.from_params(
        {"name": "b", "bucket": "x", "endpoint_url": "http://127.0.0.1:%d" % port, "access_key": "a",
         "secret_key": "s"}, "backup", timeout=2, retries=3)
    with pytest.raises(s3client.EndpointDown, match=r"location b: endpoint http://127.0.0.1:\d+/x does not answer"):
        endpoint.head("k")
    assert waits == [1, 2]      # the attempts after the first waited by the shared schedule
