"""The Tessera C library from Python through ctypes (standard library only): a trial, an online
activation with its grace period, a typo caught with its status code, and a floating seat checked
out, renewed by the heartbeat and returned. Run by tests/story.rs:

    python3 story.py LIBRARY PRODUCER_PUB BACKOFFICE_URL SERVER_URL DIR EXPORT_KEY

Exits 0 when every step went as expected, 1 at the first that did not.
"""

import ctypes
import os
import sys
import time
from ctypes import POINTER, byref, c_char_p, c_int, c_int64, c_size_t, c_uint32, c_uint64, c_void_p

# the values of include/tessera.h
OK = 0
NULL_ARGUMENT = 1
INVALID_KEY = 21
REFUSED_ALL_IN_USE = 103
SOURCE_LICENSE = 0
SOURCE_SEAT = 3
SOURCE_TRIAL = 4
SEAT_STATE_HELD = 0


class Trial(ctypes.Structure):
    _fields_ = [("active", ctypes.c_bool), ("started", c_int64), ("ends", c_int64), ("days_left", c_int64)]


def load(path):
    lib = ctypes.CDLL(path)
    sig = {
        "tessera_last_error": (c_char_p, []),
        "tessera_status_name": (c_char_p, [c_int]),
        "tessera_version": (c_char_p, []),
        "tessera_string_free": (None, [c_void_p]),
        "tessera_config_new": (c_int, [c_char_p, c_char_p, POINTER(c_void_p)]),
        "tessera_config_trial": (c_int, [c_void_p, c_uint32, POINTER(c_char_p), c_size_t]),
        "tessera_config_state_dirs": (c_int, [c_void_p, c_char_p, c_char_p]),
        "tessera_config_backoffice": (c_int, [c_void_p, c_char_p]),
        "tessera_config_free": (None, [c_void_p]),
        "tessera_client_new": (c_int, [c_void_p, POINTER(c_void_p)]),
        "tessera_client_free": (None, [c_void_p]),
        "tessera_client_pc_id": (c_char_p, [c_void_p]),
        "tessera_client_trial_status": (c_int, [c_void_p, POINTER(Trial)]),
        "tessera_client_check": (c_int, [c_void_p, c_char_p, c_char_p, POINTER(c_void_p)]),
        "tessera_client_activate": (c_int, [c_void_p, c_char_p, POINTER(c_void_p)]),
        "tessera_client_checkout": (
            c_int,
            [c_void_p, c_char_p, c_char_p, c_char_p, c_uint32, c_uint32, POINTER(c_void_p)],
        ),
        "tessera_grant_source": (c_int, [c_void_p]),
        "tessera_grant_days_left": (c_int64, [c_void_p]),
        "tessera_grant_free": (None, [c_void_p]),
        "tessera_seat_state": (c_int, [c_void_p]),
        "tessera_seat_renewals": (c_uint64, [c_void_p]),
        "tessera_seat_lease": (c_uint64, [c_void_p]),
        "tessera_seat_granted_version": (c_void_p, [c_void_p]),
        "tessera_seat_release": (c_int, [c_void_p]),
    }
    for name, (restype, argtypes) in sig.items():
        f = getattr(lib, name)
        f.restype = restype
        f.argtypes = argtypes
    return lib


class Failed(Exception):
    pass


def main(argv):
    if len(argv) != 7:
        print(__doc__, file=sys.stderr)
        return 2
    lib = load(argv[1])
    producer_pem = open(argv[2], "rb").read()
    backoffice, server, directory, export_key = (a.encode() for a in argv[3:7])

    def name(status):
        return lib.tessera_status_name(status).decode()

    def expect(status, want, what):
        if status != want:
            raise Failed(f"{what}: {name(status)}, expected {name(want)}: {lib.tessera_last_error().decode()}")

    def check(cond, what):
        if not cond:
            raise Failed(f"{what}: {lib.tessera_last_error().decode()}")

    print("libtessera_ffi", lib.tessera_version().decode())
    config, client, seat = c_void_p(), c_void_p(), c_void_p()
    try:
        # misuse is a status: None for a string argument
        expect(lib.tessera_config_new(None, producer_pem, byref(config)), NULL_ARGUMENT, "no product")
        check(b"product" in lib.tessera_last_error(), "the message names the argument")

        expect(lib.tessera_config_new(b"cad", producer_pem, byref(config)), OK, "config")
        basic = (c_char_p * 1)(b"modeler")
        expect(lib.tessera_config_trial(config, 60, basic, 1), OK, "trial")
        state = os.path.join(directory, b"state")
        backup = os.path.join(directory, b"backup")
        expect(lib.tessera_config_state_dirs(config, state, backup), OK, "state dirs")
        expect(lib.tessera_config_backoffice(config, backoffice), OK, "back office")
        expect(lib.tessera_client_new(config, byref(client)), OK, "client")
        check(len(lib.tessera_client_pc_id(client)) > 0, "a PC identifier")

        # first start: the trial
        trial = Trial()
        expect(lib.tessera_client_trial_status(client, byref(trial)), OK, "trial status")
        check(trial.active and trial.days_left == 60, "a 60-day trial")
        grant = c_void_p()
        expect(lib.tessera_client_check(client, b"render", b"1.0", byref(grant)), OK, "check render")
        check(lib.tessera_grant_source(grant) == SOURCE_TRIAL, "render from the trial")
        print(f"trial: render, {lib.tessera_grant_days_left(grant)} days left")
        lib.tessera_grant_free(grant)

        # a typo in the key, then the activation with its grace period
        typo = bytearray(export_key)
        typo[1] = ord("B") if typo[1] == ord("A") else ord("A")
        status = lib.tessera_client_activate(client, bytes(typo), None)
        expect(status, INVALID_KEY, "a typo")
        print(f"typo: {name(status)}: {lib.tessera_last_error().decode()}")
        expect(lib.tessera_client_activate(client, export_key, None), OK, "activation")
        grant = c_void_p()
        expect(lib.tessera_client_check(client, b"export", b"1.0", byref(grant)), OK, "check export")
        check(lib.tessera_grant_source(grant) == SOURCE_LICENSE, "export licensed")
        print(f"activated: export, {lib.tessera_grant_days_left(grant)} days left")
        lib.tessera_grant_free(grant)

        # a floating seat with its heartbeat
        expect(lib.tessera_client_checkout(client, server, b"simulate", b"1.0", 1, 0, byref(seat)), OK, "checkout")
        check(lib.tessera_seat_state(seat) == SEAT_STATE_HELD, "held")
        raw = lib.tessera_seat_granted_version(seat)
        version = ctypes.string_at(raw).decode()
        lib.tessera_string_free(raw)
        print(f"seat: simulate held, version {version}, lease {lib.tessera_seat_lease(seat)}")
        grant = c_void_p()
        expect(lib.tessera_client_check(client, b"simulate", b"1.0", byref(grant)), OK, "check simulate")
        check(lib.tessera_grant_source(grant) == SOURCE_SEAT, "simulate from the seat")
        lib.tessera_grant_free(grant)
        other = c_void_p()
        expect(
            lib.tessera_client_checkout(client, server, b"simulate", b"1.0", 1, 0, byref(other)),
            REFUSED_ALL_IN_USE,
            "the only seat is taken",
        )
        for _ in range(300):
            if lib.tessera_seat_renewals(seat) >= 1:
                break
            time.sleep(0.1)
        check(lib.tessera_seat_renewals(seat) >= 1, "the heartbeat renewed the lease")
        status = lib.tessera_seat_release(seat)
        seat = c_void_p()
        expect(status, OK, "release")
        print("seat returned")
        print("python: every step passed")
        return 0
    except Failed as e:
        print(f"story.py: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        if seat:
            lib.tessera_seat_release(seat)
        lib.tessera_client_free(client)
        lib.tessera_config_free(config)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
