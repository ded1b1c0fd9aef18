"""Free-text search over class codes and titles, ignoring case and Vietnamese diacritics."""

from __future__ import annotations

from dataclasses import replace

from handlers.callbacks import Action, ListQuery, list_data, search_page_data, search_tag
from handlers.catalog import PAGE_SIZE, page_buttons, page_of_classes, paginate
from handlers.help import Outcome, help_reply, main_menu, stale_button
from handlers.phrases import search_words
from handlers.state import Context, State, Step
from handlers.types import Button, Incoming, Msg, Reply


async def ask_query(state: State, ctx: Context) -> Outcome:
    """Ask what to look for; the next text message is the query."""
    reply = Reply(lines=(Msg("search.ask"),), buttons=main_menu(ctx))
    return replace(state, step=Step.SEARCH_QUERY), [reply]


async def search(state: State, text: str, ctx: Context, *, typed_freely: bool) -> Outcome:
    """Search for `text`; free text that finds nothing also gets the help."""
    query = " ".join(text.split())
    if not search_words(query):
        return await ask_query(state, ctx)
    return await _results(replace(state, last_query=query), 1, ctx, with_help=typed_freely)


async def answer_query(state: State, incoming: Incoming, ctx: Context) -> Outcome:
    """Take the text after /search (asked for earlier) as the query."""
    return await search(state, incoming.text or "", ctx, typed_freely=False)


async def show_search_page(state: State, page: int, tag: str, ctx: Context) -> Outcome:
    """Show another page of the last search, if the button belongs to it."""
    if not state.last_query or search_tag(state.last_query) != tag:
        return stale_button(state, ctx)
    return await _results(state, page, ctx, with_help=False)


async def _results(state: State, requested: int, ctx: Context, *, with_help: bool) -> Outcome:
    query = state.last_query or ""
    words = search_words(query)
    repo = ctx.repos.classes
    page = paginate(requested, await repo.count_search(ctx.today, words))
    state = replace(state, step=None)
    if page.total == 0:
        lines = [Msg("search.no_results", {"query": query}), Msg("search.suggestions")]
        if with_help:
            return state, [help_reply(ctx, lines)]
        return state, [Reply(lines=tuple(lines), buttons=main_menu(ctx))]
    classes = await repo.search(ctx.today, words, offset=page.offset, limit=PAGE_SIZE)
    state = replace(state, last_list=search_page_data(page.number, query))
    notes = [Msg("catalog.past_end")] if page.past_end else []
    title = Msg(
        "search.results",
        {"query": query, "page": page.number, "pages": page.pages, "total": page.total},
    )
    lines, class_rows = await page_of_classes(classes, ctx)
    pages = {n: search_page_data(n, query) for n in (page.number - 1, page.number + 1)}
    more = (
        Button(Msg("search.again"), Action.ASK_SEARCH.value),
        Button(Msg("menu.upcoming"), list_data(ListQuery())),
    )
    buttons = (*class_rows, *page_buttons(page, pages), more)
    return state, [Reply(lines=(*notes, title, *lines), buttons=buttons)]
