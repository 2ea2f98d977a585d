"""Alibaba Cloud SMS error codes and what each means for the notifier (a
:class:`~notify.sms.FailureKind`): read from the code, never from the text."""

from __future__ import annotations

from notify.sms import FailureKind

# The same answer would come back whatever the number: never retried.
CALL_CODES = frozenset({
    "isv.SMS_TEMPLATE_ILLEGAL",
    "isv.SMS_SIGNATURE_ILLEGAL",
    "isv.SMS_SIGNATURE_SCENE_ILLEGAL",
    "isv.SMS_SIGN_ILLEGAL",
    "isv.SMS_CONTENT_ILLEGAL",
    "isv.TEMPLATE_MISSING_PARAMETERS",
    "isv.TEMPLATE_PARAMS_ILLEGAL",
    "isv.INVALID_PARAMETERS",
    "isv.INVALID_JSON_PARAM",
    "isv.PARAM_LENGTH_LIMIT",
    "isv.PARAM_NOT_SUPPORT_URL",
    "isv.BLACK_KEY_CONTROL_LIMIT",
    "isv.MOBILE_COUNT_OVER_LIMIT",
    "isv.DOMESTIC_NUMBER_NOT_SUPPORTED",
})
# About one of the numbers: permanent for a single number; otherwise resend one by one.
PHONE_CODES = frozenset({"isv.MOBILE_NUMBER_ILLEGAL", "isv.BUSINESS_LIMIT_CONTROL"})
PERMANENT_CODES = CALL_CODES | {"isv.MOBILE_NUMBER_ILLEGAL"}
# The daily total set in the console is spent: until midnight, China time.
DAILY_QUOTA_CODES = frozenset({"isv.DAY_LIMIT_CONTROL"})
# The account cannot send at all just now: let the notifier try another provider.
ACCOUNT_CODES = frozenset({
    "isv.AMOUNT_NOT_ENOUGH",
    "isv.OUT_OF_SERVICE",
    "isv.MONTH_LIMIT_CONTROL",
    "isv.ACCOUNT_NOT_EXISTS",
    "isv.ACCOUNT_ABNORMAL",
    "isv.PRODUCT_UN_SUBSCRIPT",
    "isv.PRODUCT_UNSUBSCRIBE",
    "isv.DENY_IP_RANGE",
    "isp.RAM_PERMISSION_DENY",
    # Gateway answers about the key itself.
    "InvalidAccessKeyId.NotFound",
    "InvalidAccessKeyId.Inactive",
})


ACCOUNT_WIDE_CODES = DAILY_QUOTA_CODES | ACCOUNT_CODES


def failure_kind(code: str) -> FailureKind:
    """What an Alibaba Cloud error code means for the notifier."""
    if code.startswith("Throttling"):  # the API gateway's flow control: calls too frequent
        return FailureKind.THROTTLED
    if code in DAILY_QUOTA_CODES:
        return FailureKind.DAILY_QUOTA
    if code in ACCOUNT_CODES:
        return FailureKind.ACCOUNT
    if code in PERMANENT_CODES or code in PHONE_CODES:
        return FailureKind.REFUSED
    return FailureKind.UNREACHABLE

