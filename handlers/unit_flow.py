"""Route the unit-head buttons and typed answers to their flows."""

from __future__ import annotations

from handlers import nomination, unit_head
from handlers.help import Outcome
from handlers.state import Context, State, Step
from handlers.types import Incoming
from handlers.unit_buttons import (
    Approve,
    DeclineNomination,
    Nominate,
    NomineePage,
    PickNominee,
    Reject,
    RejectFor,
    RejectTyped,
    UnitCallback,
    UnitClass,
    UnitPage,
)

# Questions the unit-head flows ask; typed text answers them.
UNIT_STEPS = (Step.REJECT_REASON, Step.NOMINEE_QUERY)


async def press_unit(state: State, action: UnitCallback, ctx: Context) -> Outcome:
    """Do what a unit-head (or nominee's) button asks for."""
    match action:
        case UnitPage(page):
            return await unit_head.show_units(state, page, ctx)
        case UnitClass(class_id):
            return await unit_head.show_unit_class(state, class_id, ctx)
        case Approve(registration_id):
            return await unit_head.approve(state, registration_id, ctx)
        case Reject(registration_id):
            return await unit_head.ask_reason(state, registration_id, ctx)
        case RejectFor(registration_id, preset):
            return await unit_head.reject_for_preset(state, registration_id, preset, ctx)
        case RejectTyped(registration_id, tag):
            return await unit_head.reject_typed(state, registration_id, tag, ctx)
        case NomineePage(class_id, page):
            return await nomination.show_people(state, class_id, page, ctx)
        case PickNominee(class_id, person_id):
            return await nomination.confirm(state, class_id, person_id, ctx)
        case Nominate(class_id, person_id):
            return await nomination.nominate(state, class_id, person_id, ctx)
        case DeclineNomination(registration_id):
            return await nomination.decline(state, registration_id, ctx)


async def answer_unit(state: State, incoming: Incoming, ctx: Context) -> Outcome:
    """Answer the unit-head question pending in the chat with the text typed."""
    if state.step == Step.REJECT_REASON:
        return await unit_head.answer_reason(state, incoming, ctx)
    return await nomination.answer_query(state, incoming, ctx)
