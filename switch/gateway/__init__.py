"""The online gateway: SATIM-compatible REST API and hosted payment page (issue 14 §1-2).

``rest`` serves ``/payment/rest/*.do`` to merchants, ``page`` the page cardholders pay on,
``service`` their operations over the core's payments, ``orders`` the durable order rows
(migration 0013; a decline and its merchant notification in one transaction), ``lockout``
the limit on guessed ``userName``/``password`` pairs, ``server`` the aiohttp application
``switch run --gateway-port`` starts (and its expiry sweeper).
README, "Online gateway (SATIM-compatible)", is the contract.
"""
