"""solo.errors: one hierarchy, codes that survive pickling (Ray ships errors between processes)."""
from __future__ import annotations

import copy
import pickle

import pytest

import solo
from solo import errors
from solo.errors import ERRORS_BY_CODE, from_code

ALL = [errors.SoloError, errors.InvalidRequest, errors.Unauthenticated, errors.PermissionDenied, errors.NotFound,
       errors.AlreadyExists, errors.FailedPrecondition, errors.Overloaded, errors.Unavailable,
       errors.DeadlineExceeded, errors.ServiceFailed, errors.Internal]


@pytest.mark.parametrize("cls", ALL)
def test_pickling_keeps_class_message_and_exception_type(cls):
    original = cls("what went wrong; what to do", exception_type="ValueError")
    restored = pickle.loads(pickle.dumps(original))
    assert type(restored) is cls
    assert restored.message == "what went wrong; what to do" == str(restored)
    assert restored.exception_type == "ValueError"
    assert restored.code == original.code


def test_copy_keeps_exception_type():
    restored = copy.copy(errors.ServiceFailed("boom", exception_type="KeyError"))
    assert (type(restored), restored.exception_type) == (errors.ServiceFailed, "KeyError")


def test_every_class_has_its_own_code():
    assert len({cls.code for cls in ALL}) == len(ALL)
    assert all(issubclass(cls, errors.SoloError) for cls in ALL)


@pytest.mark.parametrize("code,cls", [("INVALID_ARGUMENT", errors.InvalidRequest), ("NOT_FOUND", errors.NotFound),
                                      ("RESOURCE_EXHAUSTED", errors.Overloaded),
                                      ("SERVICE_FAILED", errors.ServiceFailed),
                                      ("DEADLINE_EXCEEDED", errors.DeadlineExceeded),
                                      ("UNAUTHENTICATED", errors.Unauthenticated)])
def test_from_code_maps_codes_to_classes(code, cls):
    err = from_code(code, "msg", "TypeError")
    assert type(err) is cls and err.message == "msg" and err.exception_type == "TypeError"


def test_from_code_maps_every_registered_code_back_to_its_class():
    assert all(type(from_code(code, "m")) is cls for code, cls in ERRORS_BY_CODE.items())


def test_unknown_code_becomes_a_plain_solo_error():
    err = from_code("SOMETHING_NEW", "msg")
    assert type(err) is errors.SoloError and err.message == "msg"


def test_public_names_are_the_same_classes():
    assert solo.NotFound is errors.NotFound and solo.ServiceFailed is errors.ServiceFailed
