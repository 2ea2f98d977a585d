"""Tencent Cloud SMS error codes and what each means for the notifier (a
:class:`~notify.sms.FailureKind`): read from the code, never from the text."""

from __future__ import annotations

from notify.sms import FailureKind

# Per number: the number itself is bad or opted out.
PHONE_CODES = frozenset({
    "InvalidParameterValue.IncorrectPhoneNumber",
    "FailedOperation.PhoneNumberInBlacklist",
    "FailedOperation.PhoneNumberOnBlacklist",
})
# The template, signature or parameters of the call will not be accepted as they are.
CALL_CODES = frozenset({
    "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber",
    "UnsupportedOperation.UnsuportedRegion",
    "FailedOperation.TemplateIncorrectOrUnapproved",
    "FailedOperation.SignatureIncorrectOrUnapproved",
    "FailedOperation.MissingTemplateList",
    "FailedOperation.MissingSignatureList",
    "FailedOperation.ContainSensitiveWord",
    "InvalidParameterValue.TemplateParameterFormatError",
    "InvalidParameterValue.TemplateParameterLengthLimit",
    "InvalidParameterValue.ProhibitedUseUrlInTemplateParameter",
    "InvalidParameterValue.ContentLengthLimit",
})
PERMANENT_CODES = PHONE_CODES | CALL_CODES
# The app's daily sending limits (set in the console): spent until midnight, China time.
DAILY_QUOTA_CODES = frozenset({
    "LimitExceeded.AppDailyLimit",
    "LimitExceeded.DailyLimit",
    "LimitExceeded.AppMainlandChinaDailyLimit",
    "LimitExceeded.AppGlobalDailyLimit",
})
# Trouble with the account rather than the message: when every number of a call
# reports one of these (or a daily limit), the provider as a whole is unavailable.
ACCOUNT_CODES = frozenset({
    "FailedOperation.InsufficientBalanceInSmsPackage",
    "UnauthorizedOperation.SerivceSuspendDueToArrears",
    "UnauthorizedOperation.SdkAppIdIsDisabled",
    "UnauthorizedOperation.SmsSdkAppIdVerifyFail",
    "UnauthorizedOperation.RequestIpNotInWhitelist",
    "UnauthorizedOperation.RequestPermissionDeny",
    "InvalidParameterValue.SdkAppIdNotExist",
    # Whole-call errors about the key itself.
    "AuthFailure.SecretIdNotFound",
    "AuthFailure.InvalidSecretId",
    "AuthFailure.UnauthorizedOperation",
})
ACCOUNT_WIDE_CODES = DAILY_QUOTA_CODES | ACCOUNT_CODES
# One number got too many messages (per 30 s, hour, day, or the console's frequency rule).
NUMBER_LIMIT_CODES = frozenset({
    "LimitExceeded.PhoneNumberThirtySecondLimit",
    "LimitExceeded.PhoneNumberOneHourLimit",
    "LimitExceeded.PhoneNumberDailyLimit",
    "LimitExceeded.PhoneNumberSameContentDailyLimit",
    "LimitExceeded.DeliveryFrequencyLimit",
})


def failure_kind(code: str) -> FailureKind:
    """What a Tencent error code means for the notifier."""
    if code.startswith("RequestLimitExceeded"):  # API call frequency (and its sub-codes)
        return FailureKind.THROTTLED
    if code in DAILY_QUOTA_CODES:
        return FailureKind.DAILY_QUOTA
    if code in ACCOUNT_CODES:
        return FailureKind.ACCOUNT
    if code in PERMANENT_CODES or code in NUMBER_LIMIT_CODES:
        return FailureKind.REFUSED
    return FailureKind.UNREACHABLE

