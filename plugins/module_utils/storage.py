# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup and object-store locations: a local directory or an S3 bucket at any endpoint.

Every location offers the same small interface — list, head, open_read, open_write, delete,
probe — so the backup pipeline, the catalog, the mirror and preflight never care where bytes
go. Design points, and why:

- Streams, never whole objects: `open_write` returns a writer that uploads fixed-size parts
  as they fill (multipart on S3, a temp file renamed into place locally), so a 1 GB dump is
  never held in memory. Parts are sent in order by one background thread per writer, with
  at most one part queued: memory per writer is bounded by about three parts, and the
  producer overlaps with the network. (`rclone serve s3`, like some MinIO setups, wants
  parts in order.)
- Atomic: an object appears only when its writer closes successfully; `abort()` (or any
  error) removes the temp file or aborts the multipart upload. A writer killed with its
  process (kill -9) leaves an unfinished write (a temp file named for its key, or a multipart
  upload) that no listing shows; `leftovers()` finds them and `remove_leftovers()` ends them,
  for the next run of the same backup set to clean up after the killed one.
- Fan-out closes in two phases: every location first receives all of its bytes (S3 sends its
  last parts, the local file is fsynced), and only then is each one made visible. So a run
  killed during the long upload leaves nothing visible anywhere, not a complete-looking copy
  in the fastest location.
- Resumable reads: a download that loses its connection continues from the byte it reached
  (a Range request pinned to the object's ETag), so a flaky endpoint costs a retry, not a
  restart; persistent failure raises DRError naming the location and key.
- One error type: every boto/OS error becomes a DRError that names the location and what
  is wrong (bucket missing, credentials refused, certificate not trusted, endpoint silent).

We use boto3 directly rather than amazon.aws's module_utils: those are built around an
AnsibleModule, and this engine must run from tests and benchmarks without one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import errno
import os
import threading
import time
import uuid

try:
    import queue
except ImportError:  # pragma: no cover - Python 2 is not supported, kept for sanity's import test
    import Queue as queue  # type: ignore

from ansible_collections.auditron.dr.plugins.module_utils import aws, retry
# HAS_BOTO3 and BOTO3_IMPORT_ERROR are aws's; modules that reach S3 read them from here too.
from ansible_collections.auditron.dr.plugins.module_utils.aws import (  # pylint: disable=unused-import
    BOTO3_IMPORT_ERROR, HAS_BOTO3, s3_error)
from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line

ObjectInfo = collections.namedtuple("ObjectInfo", ["key", "size", "etag", "last_modified", "metadata"])
ObjectInfo.__new__.__defaults__ = (None, None, None)

DEFAULT_PART_SIZE = 8 * 1024 * 1024

TEMP_PREFIX = ".auditron-tmp-"


def _join(prefix, key):
    prefix = (prefix or "").strip("/")
    key = (key or "").lstrip("/")
    return "%s/%s" % (prefix, key) if prefix and key else (prefix or key)


class Location(object):
    """What every location offers. Keys are relative to the location's own prefix."""

    kind = None

    def __init__(self, name):
        self.name = name

    def describe(self):
        raise NotImplementedError

    def list(self, prefix=""):
        raise NotImplementedError

    def head(self, key):
        raise NotImplementedError

    def open_read(self, key):
        raise NotImplementedError

    def open_write(self, key, metadata=None):
        raise NotImplementedError

    def delete(self, keys):
        raise NotImplementedError

    def put_bytes(self, key, data, metadata=None):
        writer = self.open_write(key, metadata=metadata)
        try:
            writer.write(data)
        except Exception:
            writer.abort()
            raise
        return writer.close()

    def get_bytes(self, key):
        reader = self.open_read(key)
        try:
            return reader.read()
        finally:
            reader.close()

    def exists(self, key):
        return self.head(key) is not None

    def leftovers(self, prefix=""):
        """Unfinished writes (of a writer that was killed) whose key starts with `prefix`:
        a list of (key, handle) to give remove_leftovers(). Never part of list()."""
        return []

    def remove_leftovers(self, items):
        """End the unfinished writes `leftovers()` returned; [(key, error)] of those that failed."""
        return []

    def probe(self, write=True):
        """Check the location is readable and, when write is true, writable: a probe object
        is written, read back and removed. Returns {"ok", "detail"}; never raises."""
        key = ".auditron-probe/%s" % uuid.uuid4().hex
        try:
            listed = len(list(_take(self.list(""), 1)))
            if not write:
                return {"ok": True, "detail": "readable (%s); write probe not run" % ("not empty" if listed else "empty")}
            payload = b"auditron.dr preflight probe\n"
            self.put_bytes(key, payload)
            back = self.get_bytes(key)
            self.delete([key])
            if back != payload:
                return {"ok": False, "detail": "probe object came back different"}
            if self.exists(key):
                return {"ok": False, "detail": "probe object could not be removed"}
            return {"ok": True, "detail": "read, write and delete ok"}
        except DRError as exc:
            return {"ok": False, "detail": exc.message}
        except Exception as exc:  # pylint: disable=broad-except
            return {"ok": False, "detail": first_line(exc)}


def _take(iterable, count):
    for index, item in enumerate(iterable):
        if index >= count:
            return
        yield item


# ---------------------------------------------------------------------------------------------
# Local directory

class LocalLocation(Location):
    kind = "local"

    def __init__(self, name, path):
        super(LocalLocation, self).__init__(name)
        if not path:
            raise DRError("location %s: a path is required for a local location" % name)
        self.path = os.path.abspath(path)

    def describe(self):
        return "%s (%s)" % (self.name, self.path)

    def _full(self, key):
        full = os.path.normpath(os.path.join(self.path, key))
        if not (full == self.path or full.startswith(self.path + os.sep)):
            raise DRError("location %s: key %r escapes the location's directory" % (self.name, key))
        return full

    def _ensure_dir(self, directory):
        # Every directory made on the way is 0700, not only the last one: os.makedirs gives the
        # intermediate ones the umask's default (0755), and the tree tells what is backed up, when.
        for path in missing_directories(directory):
            try:
                os.mkdir(path, 0o700)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise DRError("location %s: cannot create %s: %s" % (self.name, path, exc.strerror))

    def list(self, prefix=""):
        # A missing directory is an error, not an empty location: an unmounted backup disk must
        # never look like "no backups" (prune and catalog rely on that).
        if not os.path.isdir(self.path):
            raise DRError("location %s: directory %s does not exist (not mounted?)" % (self.name, self.path))
        base = self._full(prefix) if prefix else self.path
        start = base if os.path.isdir(base) else os.path.dirname(base)
        if not os.path.isdir(start):
            return
        for root, dirs, files in os.walk(start):
            dirs.sort()
            for filename in sorted(files):
                if filename.startswith(TEMP_PREFIX):
                    continue
                full = os.path.join(root, filename)
                key = os.path.relpath(full, self.path).replace(os.sep, "/")
                if prefix and not key.startswith(prefix):
                    continue
                try:
                    stat = os.stat(full)
                except OSError:
                    continue
                yield ObjectInfo(key, stat.st_size, None, stat.st_mtime, None)

    def head(self, key):
        try:
            stat = os.stat(self._full(key))
        except OSError:
            return None
        return ObjectInfo(key, stat.st_size, None, stat.st_mtime, None)

    def open_read(self, key):
        try:
            return open(self._full(key), "rb")
        except IOError as exc:
            if exc.errno == errno.ENOENT:
                raise DRError("location %s: %s not found" % (self.name, key))
            raise DRError("location %s: cannot read %s: %s" % (self.name, key, exc.strerror))

    def open_write(self, key, metadata=None):
        full = self._full(key)
        self._ensure_dir(os.path.dirname(full))
        return LocalWriter(self, key, full)

    def delete(self, keys):
        failed = []
        for key in keys:
            try:
                os.unlink(self._full(key))
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    failed.append((key, exc.strerror))
        return failed

    def leftovers(self, prefix=""):
        if not os.path.isdir(self.path):
            return []
        found = []
        for root, _dirs, files in os.walk(self.path):
            for filename in files:
                key = _temp_key(filename)
                if key is None:
                    continue
                relative = os.path.relpath(os.path.join(root, key), self.path).replace(os.sep, "/")
                if relative.startswith(prefix):
                    found.append((relative, os.path.join(root, filename)))
        return sorted(found)

    def remove_leftovers(self, items):
        failed = []
        for key, path in items:
            try:
                os.unlink(path)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    failed.append((key, exc.strerror))
        return failed


def missing_directories(directory):
    """The directories that do not exist yet on the way to `directory`, outermost first."""
    missing = []
    current = directory
    while current and not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return list(reversed(missing))


def _temp_key(filename):
    """The key (file name) a LocalWriter's temp file `filename` was to become, or None."""
    if not filename.startswith(TEMP_PREFIX):
        return None
    name, _dot, token = filename[len(TEMP_PREFIX):].rpartition(".")
    if not name or len(token) != 32:
        return None
    return name


class LocalWriter(object):
    """Writes <dir>/.auditron-tmp-<file name>.<random>, fsyncs, renames into place on close
    (0600). The temp file's name holds the key, so that a later run can tell whose it was."""

    def __init__(self, location, key, full):
        self.location, self.key, self.full = location, key, full
        self.temp = os.path.join(os.path.dirname(full), "%s%s.%s" % (
            TEMP_PREFIX, os.path.basename(full)[:200], uuid.uuid4().hex))
        try:
            fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise DRError("location %s: cannot write %s: %s" % (location.name, key, exc.strerror))
        self.handle = os.fdopen(fd, "wb")
        self.size = 0
        self.closed = False
        self.finished = False

    def write(self, data):
        try:
            self.handle.write(data)
        except (IOError, OSError) as exc:
            self.abort()
            reason = exc.strerror or first_line(exc)
            raise DRError("location %s: writing %s failed: %s" % (self.location.name, self.key, reason))
        self.size += len(data)

    def finish(self):
        """Every byte on the disk (fsync), not yet visible: close() renames it into place."""
        if self.finished:
            return
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
        except (IOError, OSError) as exc:
            self.abort()
            reason = exc.strerror or first_line(exc)
            raise DRError("location %s: finishing %s failed: %s" % (self.location.name, self.key, reason))
        self.finished = True

    def close(self):
        self.finish()
        try:
            os.rename(self.temp, self.full)
        except (IOError, OSError) as exc:
            self.abort()
            reason = exc.strerror or first_line(exc)
            raise DRError("location %s: finishing %s failed: %s" % (self.location.name, self.key, reason))
        self.closed = True
        return ObjectInfo(self.key, self.size, None, time.time(), None)

    def abort(self):
        if self.closed:
            return
        self.closed = True
        try:
            self.handle.close()
        except (IOError, OSError):
            pass
        try:
            os.unlink(self.temp)
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# S3 (AWS, MinIO, rclone serve s3, any endpoint)

class S3Location(Location):
    kind = "s3"

    def __init__(self, name, bucket, endpoint_url=None, prefix="", region="us-east-1", access_key=None,
                 secret_key=None, session_token=None, ca_bundle=None, validate_certs=True, sse="none",
                 sse_kms_key_id=None, part_size=DEFAULT_PART_SIZE, max_attempts=5, connect_timeout=5,
                 read_timeout=60, max_pool_connections=32):
        super(S3Location, self).__init__(name)
        if not HAS_BOTO3:
            raise DRError("location %s: the boto3 Python library is required for S3 locations" % name)
        if not bucket:
            raise DRError("location %s: a bucket is required for an S3 location" % name)
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.endpoint_label = aws.bucket_label(endpoint_url, region, bucket)
        self.prefix = (prefix or "").strip("/")
        self.region = region
        self.ca_bundle = ca_bundle
        self.sse = sse if sse and sse != "none" else None
        self.sse_kms_key_id = sse_kms_key_id
        self.part_size = max(int(part_size), 5 * 1024 * 1024)
        self._client = None
        self._client_args = dict(
            endpoint_url=endpoint_url, verify=aws.verify_setting({"ca_bundle": ca_bundle, "validate_certs": validate_certs}),
            aws_access_key_id=access_key, aws_secret_access_key=secret_key, aws_session_token=session_token,
            config_args=dict(
                max_attempts=max_attempts, connect_timeout=connect_timeout, read_timeout=read_timeout,
                region_name=region, max_pool_connections=max_pool_connections,
                # Checksums only where S3 requires them: with newer botocore's default, uploads use
                # aws-chunked trailers that S3-compatible servers (rclone, older MinIO) refuse.
                request_checksum_calculation="when_required", response_checksum_validation="when_required",
                s3={"addressing_style": "path"}))
        self.access_key, self.secret_key, self.session_token = access_key, secret_key, session_token
        self.validate_certs = bool(validate_certs)

    @property
    def client(self):
        """The boto3 client, made on first use: the mirror's own S3 client reads a location's
        settings and never needs this one (0.2 s of CPU and ~12 MB the first time)."""
        if self._client is None:
            args = dict(self._client_args)
            config = aws.client_config(**args.pop("config_args"))
            self._client = aws.boto_client("s3", config=config, **args)
        return self._client

    def describe(self):
        return "%s (%s%s)" % (self.name, self.endpoint_label, ("/" + self.prefix) if self.prefix else "")

    def full_key(self, key):
        return _join(self.prefix, key)

    def relative_key(self, full_key):
        if self.prefix:
            return full_key[len(self.prefix) + 1:]
        return full_key

    def list(self, prefix=""):
        full_prefix = _join(self.prefix, prefix) if prefix else (self.prefix + "/" if self.prefix else "")
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                for item in page.get("Contents", []):
                    yield ObjectInfo(self.relative_key(item["Key"]), item["Size"], item.get("ETag", "").strip('"'),
                                     item.get("LastModified"), None)
        except Exception as exc:  # pylint: disable=broad-except
            raise s3_error(self, exc)

    def head(self, key):
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self.full_key(key))
        except Exception as exc:  # pylint: disable=broad-except
            if aws.is_client_error(exc, "404", "NoSuchKey", "NotFound"):
                return None
            raise s3_error(self, exc, key)
        metadata = dict((k.lower(), v) for k, v in (response.get("Metadata") or {}).items())
        return ObjectInfo(key, response["ContentLength"], response.get("ETag", "").strip('"'),
                          response.get("LastModified"), metadata)

    def check_bucket(self):
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # pylint: disable=broad-except
            if aws.is_client_error(exc, "404", "NoSuchBucket", "NotFound"):
                raise DRError("location %s: bucket %s does not exist at %s"
                              % (self.name, self.bucket, self.endpoint_label))
            raise s3_error(self, exc)

    def open_read(self, key):
        return ResumableReader(self, key)

    def open_write(self, key, metadata=None):
        return MultipartWriter(self, key, metadata)

    def extra_put_args(self, metadata=None):
        args = {}
        if metadata:
            args["Metadata"] = dict((str(k), str(v)) for k, v in metadata.items())
        if self.sse:
            args["ServerSideEncryption"] = self.sse
            if self.sse == "aws:kms" and self.sse_kms_key_id:
                args["SSEKMSKeyId"] = self.sse_kms_key_id
        return args

    def delete(self, keys):
        failed = []
        keys = list(keys)
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            try:
                response = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": self.full_key(k)} for k in batch], "Quiet": True})
            except Exception as exc:  # pylint: disable=broad-except
                error = s3_error(self, exc)
                failed.extend((k, error.message) for k in batch)
                continue
            for item in response.get("Errors", []):
                failed.append((self.relative_key(item.get("Key", "")), item.get("Message") or item.get("Code")))
        return failed

    def leftovers(self, prefix=""):
        """Multipart uploads under `prefix` that were started and never completed or aborted."""
        full_prefix = _join(self.prefix, prefix) if prefix else (self.prefix + "/" if self.prefix else "")
        found = []
        args = {"Bucket": self.bucket, "Prefix": full_prefix}
        try:
            while True:
                response = self.client.list_multipart_uploads(**args)
                for upload in response.get("Uploads") or []:
                    found.append((self.relative_key(upload["Key"]), upload["UploadId"]))
                if not response.get("IsTruncated") or not response.get("NextKeyMarker"):
                    break
                args.update(KeyMarker=response["NextKeyMarker"], UploadIdMarker=response.get("NextUploadIdMarker", ""))
        except Exception as exc:  # pylint: disable=broad-except
            raise s3_error(self, exc)
        return sorted(found)

    def remove_leftovers(self, items):
        failed = []
        for key, upload_id in items:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.full_key(key), UploadId=upload_id)
            except Exception as exc:  # pylint: disable=broad-except
                if aws.is_client_error(exc, "NoSuchUpload", "404"):
                    continue
                failed.append((key, s3_error(self, exc, key).message))
        return failed


class ResumableReader(object):
    """A download that resumes at the byte it reached when the connection drops."""

    def __init__(self, location, key, attempts=5, backoff=0.5):
        self.location, self.key = location, key
        self.attempts, self.backoff = attempts, backoff
        self.offset = 0
        self.etag = None
        self.size = None
        self.body = None
        self._open()

    def _open(self):
        args = {"Bucket": self.location.bucket, "Key": self.location.full_key(self.key)}
        if self.offset:
            args["Range"] = "bytes=%d-" % self.offset
        if self.etag:
            args["IfMatch"] = '"%s"' % self.etag
        try:
            response = self.location.client.get_object(**args)
        except Exception as exc:  # pylint: disable=broad-except
            raise s3_error(self.location, exc, self.key)
        if self.etag is None:
            self.etag = response.get("ETag", "").strip('"')
            self.size = response.get("ContentLength")
        self.body = response["Body"]

    def read(self, amount=-1):
        if amount is None or amount < 0:
            chunks = []
            while True:
                chunk = self.read(DEFAULT_PART_SIZE)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        failures = 0
        while True:
            try:
                data = self.body.read(amount)
                self.offset += len(data)
                if not data and self.size is not None and self.offset < self.size:
                    raise IOError("connection closed at byte %d of %d" % (self.offset, self.size))
                return data
            except DRError:
                raise
            except Exception as exc:  # pylint: disable=broad-except
                failures += 1
                if failures >= self.attempts:
                    raise DRError("location %s: download of %s failed at byte %d after %d attempts: %s"
                                  % (self.location.name, self.key, self.offset, failures, first_line(exc)))
                retry.backoff(failures, base=self.backoff, cap=None, jitter=False)
                try:
                    self._open()
                except DRError:
                    if failures + 1 >= self.attempts:
                        raise

    def close(self):
        if self.body is not None:
            try:
                self.body.close()
            except Exception:  # pylint: disable=broad-except
                pass


class MultipartWriter(object):
    """Streams an object to S3 in parts, in order, from a background thread.

    Small objects (closed before one part fills) are sent with one PutObject. The object
    appears only on close(); abort() (or an error) aborts the multipart upload.
    """

    def __init__(self, location, key, metadata=None):
        self.location, self.key, self.metadata = location, key, metadata
        self.buffer = bytearray()
        self.size = 0
        self.upload_id = None
        self.parts = []
        self.error = None
        self.closed = False
        self._queue = None
        self._thread = None
        self._next_part = 1
        self.finished = False

    def _start_multipart(self):
        try:
            response = self.location.client.create_multipart_upload(
                Bucket=self.location.bucket, Key=self.location.full_key(self.key),
                **self.location.extra_put_args(self.metadata))
        except Exception as exc:  # pylint: disable=broad-except
            raise s3_error(self.location, exc, self.key)
        self.upload_id = response["UploadId"]
        self._queue = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._upload_loop, name="s3-upload-%s" % self.location.name)
        self._thread.daemon = True
        self._thread.start()

    def _upload_loop(self):
        while True:
            item = self._queue.get()
            if item is None:
                return
            number, data = item
            if self.error is not None:
                continue
            try:
                response = self.location.client.upload_part(
                    Bucket=self.location.bucket, Key=self.location.full_key(self.key), UploadId=self.upload_id,
                    PartNumber=number, Body=bytes(data))
                self.parts.append({"PartNumber": number, "ETag": response["ETag"]})
            except Exception as exc:  # pylint: disable=broad-except
                self.error = s3_error(self.location, exc, self.key)

    def write(self, data):
        if self.error is not None:
            raise self.error
        self.buffer.extend(data)
        self.size += len(data)
        part_size = self.location.part_size
        while len(self.buffer) >= part_size:
            part = bytes(self.buffer[:part_size])
            del self.buffer[:part_size]
            self._hand_over(part)

    def _hand_over(self, part):
        if self.upload_id is None:
            self._start_multipart()
        number = self._next_part
        self._next_part += 1
        self._queue.put((number, part))
        if self.error is not None:
            raise self.error

    def _finish_thread(self):
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def finish(self):
        """Send every part still buffered or queued and wait for them (the object is not visible
        yet: close() completes the upload). A small object, one PutObject, is left to close()."""
        if self.finished or self.closed or self.upload_id is None:
            return
        try:
            if self.buffer:
                self._hand_over(bytes(self.buffer))
                self.buffer = bytearray()
            self._finish_thread()
            if self.error is not None:
                raise self.error
        except DRError:
            self.abort()
            raise
        self.finished = True

    def close(self):
        if self.closed:
            raise DRError("location %s: %s was already closed" % (self.location.name, self.key))
        self.finish()
        try:
            if self.upload_id is None:
                try:
                    response = self.location.client.put_object(
                        Bucket=self.location.bucket, Key=self.location.full_key(self.key), Body=bytes(self.buffer),
                        **self.location.extra_put_args(self.metadata))
                except Exception as exc:  # pylint: disable=broad-except
                    raise s3_error(self.location, exc, self.key)
                self.closed = True
                return ObjectInfo(self.key, self.size, response.get("ETag", "").strip('"'), None, self.metadata)
            parts = sorted(self.parts, key=lambda p: p["PartNumber"])
            try:
                response = self.location.client.complete_multipart_upload(
                    Bucket=self.location.bucket, Key=self.location.full_key(self.key), UploadId=self.upload_id,
                    MultipartUpload={"Parts": parts})
            except Exception as exc:  # pylint: disable=broad-except
                raise s3_error(self.location, exc, self.key)
            self.closed = True
            return ObjectInfo(self.key, self.size, response.get("ETag", "").strip('"'), None, self.metadata)
        except DRError:
            self.abort()
            raise

    def abort(self):
        if self.closed:
            return
        self.closed = True
        self.error = self.error or DRError("location %s: upload of %s aborted" % (self.location.name, self.key))
        if self._thread is not None:
            # Drain what is queued so the thread can see the end marker.
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._finish_thread()
        if self.upload_id is not None:
            try:
                self.location.client.abort_multipart_upload(
                    Bucket=self.location.bucket, Key=self.location.full_key(self.key), UploadId=self.upload_id)
            except Exception:  # pylint: disable=broad-except
                # The upload stays invisible either way; servers expire abandoned uploads.
                pass


# ---------------------------------------------------------------------------------------------
# Fan-out: one stream, several locations

class FanOutWriter(object):
    """Writes one stream to several locations at once.

    A location that fails is aborted and set aside with its error; the others go on, so one
    full disk or one silent endpoint does not cost the copies elsewhere. close() returns
    ({location name: ObjectInfo}, {location name: error message}); when every location
    failed it raises DRError.
    """

    def __init__(self, locations, key, metadata=None):
        self.key = key
        self.writers = collections.OrderedDict()
        self.failed = collections.OrderedDict()
        for location in locations:
            try:
                self.writers[location.name] = location.open_write(key, metadata=metadata)
            except DRError as exc:
                self.failed[location.name] = exc.message
        self._check_any()

    def _check_any(self):
        if not self.writers:
            raise DRError("%s could not be written to any location: %s" % (
                self.key, "; ".join("%s: %s" % item for item in self.failed.items())))

    def write(self, data):
        for name in list(self.writers):
            try:
                self.writers[name].write(data)
            except DRError as exc:
                self.writers.pop(name).abort()
                self.failed[name] = exc.message
        self._check_any()

    def close(self):
        # Phase 1: every location receives all of its bytes; phase 2: each is made visible. A
        # run killed before phase 2 leaves no visible copy anywhere (see the module docstring).
        for name, writer in list(self.writers.items()):
            try:
                if hasattr(writer, "finish"):
                    writer.finish()
            except DRError as exc:
                self.writers.pop(name).abort()
                self.failed[name] = exc.message
        done = collections.OrderedDict()
        for name, writer in list(self.writers.items()):
            try:
                done[name] = writer.close()
            except DRError as exc:
                self.failed[name] = exc.message
        if not done:
            raise DRError("%s could not be written to any location: %s" % (
                self.key, "; ".join("%s: %s" % item for item in self.failed.items())))
        return done, dict(self.failed)

    def abort(self):
        for writer in self.writers.values():
            writer.abort()
        self.writers.clear()


# ---------------------------------------------------------------------------------------------
# From Ansible-shaped parameters (see base.location_suboptions)

def location_from_params(params, what=None, **tuning):
    """Build a Location from one `locations` item; `what` names it in messages. A Location
    already built (tests, benchmarks) is returned as it is."""
    if isinstance(params, Location):
        return params
    params = dict(params or {})
    name = params.get("name") or what or "location"
    label = what or ("location %s" % name)
    kind = params.get("type") or "s3"
    if kind == "local":
        if not params.get("path"):
            raise DRError("%s: path is required when type is local" % label)
        return LocalLocation(name, params["path"])
    if kind != "s3":
        raise DRError("%s: type must be s3 or local, got %r" % (label, kind))
    if not params.get("bucket"):
        raise DRError("%s: bucket is required when type is s3" % label)
    return S3Location(
        name, params["bucket"], endpoint_url=params.get("endpoint_url") or params.get("endpoint"),
        prefix=params.get("prefix") or "", region=params.get("region") or "us-east-1",
        access_key=params.get("access_key"), secret_key=params.get("secret_key"),
        session_token=params.get("session_token"), ca_bundle=params.get("ca_bundle") or params.get("ca_file"),
        validate_certs=params.get("validate_certs", True) is not False, sse=params.get("sse") or "none",
        sse_kms_key_id=params.get("sse_kms_key_id"), **tuning)


def locations_from_params(items, **tuning):
    """The `locations` list as Locations, each parsed once (items may be Locations already); names unique."""
    names = set()
    result = []
    for index, item in enumerate(items or []):
        name = item.name if isinstance(item, Location) else (item or {}).get("name")
        location = location_from_params(item, what="locations[%d] (%s)" % (index, name), **tuning)
        if location.name in names:
            raise DRError("locations[%d]: the name %s is used twice" % (index, location.name))
        names.add(location.name)
        result.append(location)
    return result


def empty_prefix(locations, prefix, check_mode=False):
    """Remove every object under `prefix` in each location (object_prefix, the drill's teardown):
    {removed, bytes, changed}; check mode counts only. An empty prefix is refused (it would
    empty the whole location)."""
    prefix = prefix or ""
    if not prefix.strip("/"):
        raise DRError("object_prefix: prefix must not be empty (it would empty the whole location)")
    if not locations:
        raise DRError("object_prefix: give at least one location in locations")
    result = {"removed": 0, "bytes": 0, "changed": False}
    for location in locations_from_params(locations):
        objects = list(location.list(prefix))
        result["removed"] += len(objects)
        result["bytes"] += sum(o.size for o in objects)
        if check_mode or not objects:
            continue
        failed = location.delete([o.key for o in objects])
        if failed:
            raise DRError("%s: %d of %d objects under %s could not be removed: %s" % (
                location.describe(), len(failed), len(objects), prefix, failed[0][1]), failed=failed)
    result["changed"] = result["removed"] > 0
    return result


class PrefixedLocation(Location):
    """A location seen through a key prefix (``config/``): keys are relative to the prefix.

    The same `locations` list then serves every kind of backup, each under its own prefix of
    the bucket or directory, as docs/development.md lays the buckets out.
    """

    def __init__(self, inner, prefix):
        super(PrefixedLocation, self).__init__(inner.name)
        self.inner = inner
        self.kind = inner.kind
        cleaned = (prefix or "").strip("/")
        self.prefix = cleaned + "/" if cleaned else ""

    def describe(self):
        return "%s under %s" % (self.inner.describe(), self.prefix or "/")

    def list(self, prefix=""):
        for info in self.inner.list(self.prefix + (prefix or "")):
            if info.key.startswith(self.prefix):
                yield info._replace(key=info.key[len(self.prefix):])

    def head(self, key):
        info = self.inner.head(self.prefix + key)
        return info._replace(key=key) if info is not None else None

    def open_read(self, key):
        return self.inner.open_read(self.prefix + key)

    def open_write(self, key, metadata=None):
        return self.inner.open_write(self.prefix + key, metadata=metadata)

    def delete(self, keys):
        return [(key[len(self.prefix):], error) for key, error in self.inner.delete([self.prefix + k for k in keys])]
