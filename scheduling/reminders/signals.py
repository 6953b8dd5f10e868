"""Hooks the capabilities above the outbox attach to (receivers are connected in apps.py). Sent
synchronously inside the transaction that stores a reply, so a receiver's writes commit or roll back
with it.

offer_code_reply(sender=InboundMessage, message, patients, code, declined, at)
    A reply that is a yes with a short code ("YES 4821", "yes4821"): the answer to a text offering an
    earlier time; or, with declined=True, a no with a code ("NO 4821") or a bare "No" (code "") from one
    patient. `patients` are those with the sender's number (one, or several sharing it). A receiver that
    handles offers answers with an OfferReplyAnswer; with none, a coded reply goes to admin staff and a
    bare "No" is read as usual (a request to rearrange the next appointment).
"""

from dataclasses import dataclass

from django.dispatch import Signal

offer_code_reply = Signal()


@dataclass(frozen=True)
class OfferReplyAnswer:
    handling: str  # an InboundMessage.Handling value
    appointment: object = None  # the appointment booked or moved, if any
    patient: object = None  # whose offer it was, when several patients share the number
