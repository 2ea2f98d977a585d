"""Hand-off to a caseworker (留言给工作人员): cases, their routing, replies reaching the
person, and telling earlier askers when their question has an answer.

The bot (``bot.handoff``), the staff UI (``admin.views.cases``) and the SMS reply
callback (``notify.receipts``) use this package; it imports none of them.
"""
