"""The share lock in object storage: a lease object, taken with a conditional PUT and renewed.

A bucket has no flock that dies with its process, so the lock is an object, `.lock-SHARE`, whose
body says who holds it (this machine's identity, the process id and start time, a token):

- **Taking it**: PUT with `If-None-Match: *`. Of two runs that race, the store lets one create it;
  the other gets 412 and reads what is there.
- **Holding it**: a thread renews it every RENEW_S with `If-Match: <our ETag>`, which moves its
  Last-Modified on the store's clock.
- **A lock already there** is taken over, with `If-Match: <its ETag>` (of two runs that try, one
  wins), when it is stale: its holder is a process of this machine that is gone (a SIGKILLed run,
  whose rerun need not wait), or the store's own clock (its `Date` against the lock's
  `Last-Modified`, so no client clock matters) says nobody renewed it for LEASE_S (a run killed on
  another machine, or cut off from the store). Otherwise the run is refused.
- **Losing it**: a renewal refused (another run took over) or not done for LEASE_S - RENEW_S makes
  every later write of the run fail (`check`) as a full disk does: the run stops and records
  nothing more, so two runs never write one share's journal at once.
- **Letting go**: DELETE with `If-Match: <our ETag>`, never someone else's lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from openimages_pipe.download import s3
from openimages_pipe.errors import InputError, OutputError

# How long a lock nobody renews holds off other machines: long enough to outlast a store's
# hiccups (several renewals fail before it matters), short enough to rerun a killed machine's
# share within the minute.
LEASE_S = 60.0
RENEW_S = 10.0


def machine() -> str | None:
    """Who "this machine" is for process ids: the host, its boot, and the pid namespace (two
    containers of one host see different processes under one pid). None without /proc."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{socket.gethostname()}/{boot}/{namespace}"


def started(pid: int) -> str | None:
    """A process's start time (clock ticks since boot): a pid reused by another process differs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


class Lease:
    """One share's lock object, held by this process while a run writes the share."""

    def __init__(self, client: s3.S3Client, url: s3.ObjectUrl, refusal: str, folder: str) -> None:
        self.client, self.url, self.refusal, self.folder = client, url, refusal, folder
        me = {"machine": machine(), "pid": os.getpid(), "started": started(os.getpid())}
        self.body = json.dumps({**me, "token": uuid.uuid4().hex}).encode()
        self.etag: str | None = None
        self.renewed = 0.0  # time.monotonic() of the last renewal the store accepted
        self.lost: str | None = None  # why the lease is no longer ours
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="share-lease", daemon=True)

    def acquire(self) -> None:
        for _ in range(3):  # a lock released between our PUT and our GET: try again
            reply = self.client.put(self.url, self.body, if_none_match=True)
            if reply.status == 200:
                return self._took(reply)
            there = self.client.get(self.url)
            if there.status == 404:
                continue
            if there.body == self.body:  # ours: a retried PUT whose first try had landed
                return self._took(there)
            if not stale(there):
                raise InputError(f"{self.refusal} ({_holder(there)})", self.folder)
            reply = self.client.put(self.url, self.body, if_match=there.etag)
            if reply.status == 200:
                return self._took(reply)
        raise InputError(f"{self.refusal} (another run took the lock first)", self.folder)

    def _took(self, reply: s3.Reply) -> None:
        self.etag, self.renewed = reply.etag, time.monotonic()
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_S):
            try:
                reply = self.client.put(self.url, self.body, if_match=self.etag)
            except s3.S3Error:
                continue  # the store's hiccup: `check` ends the run if it lasts
            if reply.status != 200:
                self.lost = "another run took the share lock over"
                return
            self.etag, self.renewed = reply.etag, time.monotonic()

    def check(self) -> None:
        """Refuse a write of a run whose lease is not surely its own any more."""
        if self.lost is None and time.monotonic() - self.renewed > LEASE_S - RENEW_S:
            self.lost = f"the share lock could not be renewed for {LEASE_S - RENEW_S:.0f} s"
        if self.lost is not None:
            raise OutputError(str(self.url), self.lost)

    def release(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.lost is None and self.etag is not None:
            # left behind, it is stale within LEASE_S (at once for a rerun here)
            with contextlib.suppress(s3.S3Error):
                self.client.delete(self.url, if_match=self.etag)


def stale(lock: s3.Reply) -> bool:
    """Whether a lock object's holder is surely gone (see the module's docstring)."""
    try:
        holder = json.loads(lock.body)
    except ValueError:
        holder = {}
    mine = holder.get("machine") is not None and holder.get("machine") == machine()
    if mine and started(int(holder.get("pid", 0))) != holder.get("started"):
        return True  # a process of this machine that is gone
    now, renewed = lock.server_time("date"), lock.server_time("last-modified")
    return now is not None and renewed is not None and (now - renewed).total_seconds() > LEASE_S


def _holder(lock: s3.Reply) -> str:
    try:
        holder = json.loads(lock.body)
        who = f"pid {holder['pid']} on {str(holder['machine']).split('/')[0]}"
    except (ValueError, KeyError, TypeError):
        who = "a lock of unknown form"
    renewed = lock.headers.get("last-modified", "?")
    return f"held by {who}, renewed {renewed}; a lock nobody renews lapses after {LEASE_S:.0f} s"
