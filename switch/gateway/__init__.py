"""The online gateway: SATIM-compatible REST API and hosted payment page (issue 14 §1-2).

``rest`` serves ``/payment/rest/*.do`` to merchants, ``page`` the page cardholders pay on,
``service`` their operations over the core's payments, ``orders`` the durable order rows
(migration 0013), ``server`` the aiohttp application ``switch run --gateway-port`` starts.
README, "Online gateway (SATIM-compatible)", is the contract.
"""
