"""Reminders over WeChat and SMS (payout, recheck, application status)."""
