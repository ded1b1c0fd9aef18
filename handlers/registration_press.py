"""Route a pressed registration button (see registration_buttons) to its flow."""

from __future__ import annotations

from handlers.help import Outcome
from handlers.my_registrations import (
    accept_offer,
    ask_to_cancel,
    cancel_registration,
    decline_offer,
    send_calendar,
    show_my_registrations,
)
from handlers.registration import ask_to_register, confirm_registration
from handlers.registration_buttons import Do, MyRegistrations, RegistrationButton
from handlers.state import Context, State


async def press_registration(
    state: State, button: RegistrationButton | MyRegistrations, ctx: Context
) -> Outcome:
    """Do what a registration button asks for."""
    if isinstance(button, MyRegistrations):
        return await show_my_registrations(state, ctx)
    match button.do:
        case Do.REGISTER:
            return await ask_to_register(state, button.id, ctx)
        case Do.CONFIRM:
            return await confirm_registration(state, button.id, ctx)
        case Do.ASK_CANCEL:
            return await ask_to_cancel(state, button.id, ctx)
        case Do.CANCEL:
            return await cancel_registration(state, button.id, ctx)
        case Do.CALENDAR:
            return await send_calendar(state, button.id, ctx)
        case Do.ACCEPT:
            return await accept_offer(state, button.id, ctx)
        case Do.DECLINE:
            return await decline_offer(state, button.id, ctx)
