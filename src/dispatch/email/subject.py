"""Subject and preheader templates (pure): Jinja2 in a sandbox that admits only text,
variables and a few filters, checked on the syntax tree before anything is compiled.

They come from the config (report.subject, report.headline_subject, report.preheader) or
an edition's front matter, which editors in the console write: nothing in them may run
code, allocate without bound or reach anything but the edition's own variables.
"""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2 import nodes as jinja_nodes
from jinja2.sandbox import SandboxedEnvironment

from dispatch.config.yamlsource import shorten
from dispatch.errors import Problem
from dispatch.values import Fact

# Subject and preheader may use these; StrictUndefined turns a typo into an error.
_TEMPLATE_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
# Only filters whose result is about as long as their input: 'center(10**9)' or
# 'format' could allocate without bound. No globals (range, lipsum, ...): a name is
# one of the edition's variables or an error that lists them.
TEMPLATE_FILTERS = ("capitalize", "default", "lower", "title", "trim", "truncate", "upper")
_TEMPLATE_ENV.filters = {name: _TEMPLATE_ENV.filters[name] for name in TEMPLATE_FILTERS}
_TEMPLATE_ENV.tests = {}
_TEMPLATE_ENV.globals = {}
# The longest subject or preheader template, and the longest text it may fill in to:
# RFC 5322's line limit, far beyond what any inbox shows.
TEMPLATE_MAX_CHARS = 998


def fill(template: str, variables: dict[str, Any], shown: str, line: int | None, what: str, problems: list[Problem]) -> str:
    where = line if line is not None else 1
    checked = _checked_template(template, what)
    if isinstance(checked, Fact):
        problems.append(Problem(shown, where, checked))
        return template
    try:
        # Compiled from the checked tree, not the text: nothing unchecked gets compiled.
        result = _TEMPLATE_ENV.from_string(checked).render(variables)
    except UndefinedError as exc:
        problems.append(Problem.of(shown, where, "template.unknown_variable", what=what, detail=str(exc.message),
                                   variables=", ".join(sorted(variables))))
        return template
    except (TemplateError, TypeError, ValueError, OverflowError) as exc:
        # A filter given a value of the wrong kind, e.g. truncate("ten").
        problems.append(Problem.of(shown, where, "template.failed", what=what, detail=shorten(str(exc), 120)))
        return template
    if len(result) > TEMPLATE_MAX_CHARS:
        problems.append(Problem.of(shown, where, "template.result_too_long", what=what, length=len(result),
                                   limit=TEMPLATE_MAX_CHARS))
        return template
    return result


def check_template(template: str, shown: str, line: int, what: str) -> list[Problem]:
    """The problem with a subject or preheader template (as a one-item list), checked
    without rendering it; for templates from the config, named at their own line."""
    checked = _checked_template(template, what)
    return [Problem(shown, line, checked)] if isinstance(checked, Fact) else []


def _checked_template(template: str, what: str) -> jinja_nodes.Template | Fact:
    """The parsed template, or what is wrong with it (a message).

    Checked on the syntax tree before anything is compiled: Jinja folds constants at
    compile time, so '{{ "a" * 1000000000 }}' would allocate a gigabyte before render()
    or any sandbox saw it. Allowed: text, {{ name }}, {{ name | filter(constants) }}."""
    if len(template) > TEMPLATE_MAX_CHARS:
        return Fact.of("template.too_long", what=what, length=len(template), limit=TEMPLATE_MAX_CHARS)
    try:
        tree = _TEMPLATE_ENV.parse(template)
    except TemplateSyntaxError as exc:
        return Fact.of("template.syntax_error", what=what, detail=str(exc.message))
    for statement in tree.body:
        if not isinstance(statement, jinja_nodes.Output):
            return Fact.of("template.statement", what=what)
        for node in statement.nodes:
            refused = _refused_expression(node)
            if refused:
                return Fact.of("template.expression", what=what, refused=refused)
    return tree


def _refused_expression(node: jinja_nodes.Node) -> str | None:
    """Why an expression inside {{ }} is not allowed, or None if it is."""
    if isinstance(node, (jinja_nodes.TemplateData, jinja_nodes.Const)):
        return None
    if isinstance(node, jinja_nodes.Name):
        return None if node.ctx == "load" else "assignment is not"
    if isinstance(node, jinja_nodes.Filter):
        if node.name not in TEMPLATE_FILTERS:
            return f"the filter '{node.name}' is not (filters: {', '.join(TEMPLATE_FILTERS)})"
        arguments = [*node.args, *(keyword.value for keyword in node.kwargs)]
        if node.dyn_args is not None or node.dyn_kwargs is not None or not all(isinstance(a, jinja_nodes.Const) for a in arguments):
            return f"the filter '{node.name}' may only be given plain values, like truncate(60) or default(\"text\")"
        return _refused_expression(node.node) if node.node is not None else "a filter block is not"
    kinds: tuple[tuple[tuple[type[jinja_nodes.Node], ...], str], ...] = (
        ((jinja_nodes.Compare, jinja_nodes.CondExpr, jinja_nodes.Test, jinja_nodes.And, jinja_nodes.Or, jinja_nodes.Not),
         "comparisons and conditions are not"),
        ((jinja_nodes.BinExpr, jinja_nodes.UnaryExpr), "arithmetic (+ - * / // % **) is not"),
        ((jinja_nodes.Concat,), "'~' is not; write the text beside the variable instead"),
        ((jinja_nodes.Call,), "calls are not"),
        ((jinja_nodes.Getattr, jinja_nodes.Getitem, jinja_nodes.Slice), "attribute and item access (. and []) is not"),
        ((jinja_nodes.List, jinja_nodes.Tuple, jinja_nodes.Dict), "lists and mappings are not"),
    )
    for types, message in kinds:
        if isinstance(node, types):
            return message
    return f"'{type(node).__name__}' expressions are not"
