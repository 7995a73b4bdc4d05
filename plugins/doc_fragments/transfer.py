# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # How object copies run, and the guard on what they delete (base.transfer_argument_spec,
    # checked by mirror.check_transfer_params): object_mirror and file_history share the
    # mirror's engine, so they share these options and their defaults.
    DOCUMENTATION = r"""
options:
  max_delete_percent:
    description: Refuse to delete more than this share of the objects at the destination (or restore target) unless
      O(force=true).
    type: float
    default: 10
  force:
    description: Delete even beyond O(max_delete_percent).
    type: bool
    default: false
  threads:
    description: Parallel transfers.
    type: int
    default: 16
  part_size_mb:
    description: Objects up to this size are read into memory and copied in one request (with Content-MD5 and a
      sha256 in their metadata); the part size of multipart uploads. At least 5.
    type: int
    default: 8
  multipart_threshold_mb:
    description: Objects above O(part_size_mb) and up to this size are streamed in one request (constant memory,
      Content-MD5 from the source's MD5 ETag); larger ones go as multipart uploads, parts in ascending order.
    type: int
    default: 256
  retries:
    description: Attempts per request, and per streamed copy, before an object counts as failed.
    type: int
    default: 5
  timeout:
    description: Seconds to wait for an endpoint to answer before the attempt counts as failed.
    type: int
    default: 60
  progress_interval:
    description: Seconds between progress lines (syslog, and O(progress_file) when set).
    type: int
    default: 30
  progress_file:
    description: File to append progress lines to, for watching a long run.
    type: path
"""
