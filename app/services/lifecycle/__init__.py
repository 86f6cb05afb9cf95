"""The lifecycle of a call request: the one owner of every move of its status, its payment state
and its clock.

* ``table.py``: the allowed moves (the single source; ``docs/lifecycle.md`` draws it).
* ``_moves.py``: the executor (one conditional UPDATE per move), the one loader of a request row,
  and the sweep's lease on rows it follows up.
* ``decisions.py``: from the paid checkout to the seller's decision (open, accept, decline, cancel,
  expire).
* ``clock.py``: an accepted call (the clock starts, the call completes, the no-shows, a refused
  capture).
* ``payments.py``: the payment (captured, voided, refunded, disputed) and disputes in the ledger.
* ``notices.py``: the emails the moves send.

Other services ask these functions to move a request; they never write ``status`` or
``payment_state`` themselves (a test checks).
"""

from app.services.lifecycle._moves import load_request, require_request

__all__ = ["load_request", "require_request"]
