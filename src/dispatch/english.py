"""The English catalogue: every fact's code and its English wording, for the command line, the logs
and the exports (dispatch.wording words facts with it; the Swedish is in locale/sv/LC_MESSAGES/dispatch.po,
keyed by the same codes).

``{name}`` fills in a parameter; an entry with two forms is chosen by the fact's ``count`` (1 or
other). The English of a problem or a refusal is exactly what the command line has always printed.
"""

from __future__ import annotations

from dispatch.values import Role, RunState

# Every action the audit log records (its "action" column).
AUDIT_ACTIONS = (
    "sign_in", "sign_in_failed", "sign_out", "locked", "save", "save_refused", "approve", "revoke", "send",
    "stop", "resume", "retry_now", "export", "user_added", "user_disabled", "user_enabled", "user_updated",
    "sso_held", "correction_started", "password_changed", "sso_refused", "sso_failed", "list_accepted",
)

# code -> English wording (or its singular and plural forms)
ENGLISH: dict[str, str | tuple[str, str]] = {
    "duration.seconds": ("{count} second", "{count} seconds"),
    "duration.minutes": ("{count} minute", "{count} minutes"),
    "duration.hours": ("{count} hour", "{count} hours"),
    **{f"run_state.{state.value}": state.value.replace("_", " ") for state in RunState},
    **{f"role.{role.value}": role.value for role in Role},
    "run.failed": "The send could not run: {detail}",
    "run.revoked": "the approval was revoked during the send",
    # Why the relay did not take messages (values.RelayCause)
    "relay_cause.connection_refused": "connection refused",
    "relay_cause.unreachable": "the server cannot be reached (name or network)",
    "relay_cause.timeout": "no answer in time",
    "relay_cause.disconnected": "the server closed the connection",
    "relay_cause.tls": "TLS failed or the certificate is not trusted (transport.ca_file)",
    "relay_cause.authentication": "the server refused the credentials",
    "relay_cause.temporary_reply": "the server refused the session for now",
    "relay_cause.permanent_reply": "the server refused the session",
    "relay_cause.quota": "the mailbox's daily submission quota is used up",
    "relay_cause.other": "the session failed",
    # The relay's trouble, as a send's page says it
    "relay.paused": "The relay {host} cannot be reached right now: {cause}. No recipient is counted as failed for it; "
                    "the send tries again {when} (or press Retry now once it is fixed).",
    "relay.refused": "The relay {host} does not take the send: {cause}. It must be fixed; no recipient is counted as "
                     "failed for it. Press Retry now once it is fixed.",
    "relay.held": ("{count} recipient waits because the relay {host} did not take the send: {cause}. It is not counted "
                   "as failed for it; it gets another attempt{when} (Retry now sends at once).",
                   "{count} recipients wait because the relay {host} did not take the send: {cause}. None of them is "
                   "counted as failed for it; they get another attempt{when} (Retry now sends to them at once)."),
    "relay.row": "waits: the relay did not take it ({cause})",
    "relay.at": "at {time}",
    "relay.soon": "shortly",
    "held.elsewhere": ("{count} recipient is held by another run (another node, the service, or a run that was "
                       "interrupted) until {time} at the latest; after that the next run sends to it.",
                       "{count} recipients are held by another run (another node, the service, or a run that was "
                       "interrupted) until {time} at the latest; after that the next run sends to them."),
    "urgent.ahead": "The urgent message \"{subject}\" goes first; this send goes on by itself when it is out.",
    "reply.accepted": "accepted",
    # A test send's first attempt (app.Runs.test_outcome)
    "test.sent": "A [TEST] was sent to {email}.",
    "test.deferred": ("The test could not be sent to {email}: the relay {host} did not take it ({reason}). It is tried "
                      "again by itself when the relay takes messages (or with \"try again now\" on its page); nobody "
                      "needs to send it again."),
    "test.deferred_reply": ("The test could not be sent to {email} yet: the server answered \"{reply}\". It is tried "
                            "again by itself; nobody needs to send it again."),
    "test.failed": "The test could not be sent to {email}: the server refused the address (\"{reply}\").",
    "test.under_way": "The test to {email} is still being sent; follow it on its page.",
    # A send plan (values.SendPlan): the command line's `plan:` line, word for word as before
    "plan.smtp": ("plan: {recipients} recipients in {messages} messages{bcc} over {connections} connection(s) to "
                  "{relay}{rate}{tail}",) * 2,
    "plan.maildir": "plan: {recipients} recipients into the Maildir {relay}{tail}",
    "plan.bcc": " of up to {per_message} recipients (Bcc)",
    "plan.rate": " at {rate}/min: about {about}",
    "plan.already": "; {already} already have it",
    "plan.skipped": " (recipients already accepted are skipped)",
    # A dispatch as people name it (values.DispatchLabel)
    "label.edition": "Report of {day}",
    "label.correction": "Report of {day}, revision {revision}",
    "label.urgent": "Urgent: {subject}",
    "label.test": "Test to {name}",
    # Whether an edition dispatch's file still holds what was sent (status, the dispatch's page)
    "edition_file.unreadable": "{path} cannot be read as an edition now ({error})",
    "edition_file.revision": "{path} is now revision {revision} (content {content})",
    "edition_file.conflict": "{path} has changed since it was sent (content now {content}); see dispatch check",
    "edition_file.standing_changed": "{path} unchanged; the config's standing sections or templates have changed since",
    "edition_file.unchanged": "{path} unchanged (content {content})",
    "edition_file.changed": "{path} has changed (content now {content}): {reason}",
    # One day's edition (app.overview)
    "edition.missing": "Missing: no report is written for the day",
    "edition.problems": ("Draft with {count} problem to fix", "Draft with {count} problems to fix"),
    "edition.draft": "Draft: {reason}",
    "edition.approved_by": "Approved by {by} {at}",
    "edition.approved_in_file": "Approved (status: approved in the file)",
    "edition.correction": "Correction (revision {revision}): {state}",
    "edition.sending": "Sending: {sent} of {total}",
    "edition.not_sending": "Not being sent now: {sent} of {total} have it (stopped or ended early; resume it from its page)",
    "edition.waiting_for_urgent": "Waiting: the urgent message \"{subject}\" goes first; {sent} of {total} have it",
    "edition.paused_by_relay": "Paused: the relay does not take messages; {sent} of {total} have it",
    "edition.sent": ("Sent {at} to {sent} recipient", "Sent {at} to {sent} recipients"),
    "edition.failed": (", {count} failed",) * 2,
    # The right password for a locked account (only ever said to someone who gave it).
    "sign_in.locked": "the account is locked until {until} after too many wrong passwords",
}

# Problems with an input (errors.Problem), each shown on the command line as "path:line: wording".
# The English is exactly what the command line has always printed; tests and people read it.
ENGLISH.update({
    # email/editorial.py: an edition's Markdown
    "editorial.top_level_heading": "'# {text}' is a top-level heading, but the report title is the only one "
                                   "(dispatch adds it): start a section with '## {text}' instead",
    "editorial.top_level_heading_underlined": "'{text}' underlined with '===' is a top-level heading, but the report "
                                              "title is the only one (dispatch adds it): start a section with "
                                              "'## {text}' instead",
    "editorial.glued_heading": "'{text}' is shown as literal text, not as a heading: put a space after the '#' "
                               "characters, '{fixed}'",
    "editorial.unclosed_link": "unclosed link '{text}' is shown as literal text: end the address with ')' "
                               "(an address cannot contain spaces; write them as %20)",
    "editorial.spaced_link": "'{text}' is shown as literal text, not as a link: remove the space between ']' and '('",
    "editorial.unclosed_bold": "'{marker}' is shown as literal text, not as bold ('{text}'): close the bold text with "
                               "'{marker}' right after its last word, e.g. '{marker}Viktigt{marker}' (no space just "
                               "inside the '{marker}'), or write '{escaped}{escaped}' if the characters are meant "
                               "literally",
    "editorial.www_autolink": "'{text}' is shown as literal text, not as a link: an address needs its scheme, "
                              "write '{fixed}'",
    "editorial.schemeless_link": "the link address '{address}' has no scheme such as 'https://', so in an email it "
                                 "leads nowhere: write {fixed}",
    "editorial.relative_link": "the link address '{address}' has no scheme such as 'https://', so in an email it "
                               "leads nowhere: write the full address starting with 'https://'",
    "editorial.image": "image '{written}': images are not sent with the report (Outlook blocks remote images); "
                       "link to it instead: {fixed}",
    "editorial.vague_link_text": "the link text '{text}' says nothing on its own (screen readers list links without "
                                 "the text around them): name what it leads to, e.g. "
                                 "'[Samlad information om Millennium](...)'",
    "editorial.text_before_first_section": "text before the first section: an edition's content goes under a "
                                           "'## Heading'; move '{text}' into a section or delete it",
    "editorial.empty_section": "section '{heading}' is empty: add content under it or remove the heading",
    # email/edition.py: the front matter (the console's fields)
    "edition.front_matter_not_closed": "front matter opened with '---' on line 1 is never closed; add a line with "
                                       "only '---' after the front matter",
    "edition.no_front_matter": "the edition needs YAML front matter between '---' lines, with 'compiled' and 'status'",
    "edition.front_matter_not_mapping": "front matter must be a YAML mapping (key: value lines)",
    "edition.unknown_key": "unknown front matter key {key}; known keys: {known}",
    "edition.not_a_flag": "'{key}' must be true or false",
    "edition.file_name": "the edition file must be named YYYY-MM-DD.md after its date",
    "edition.no_status": "missing required key 'status'; add 'status: draft' or 'status: approved'",
    "edition.bad_status": "'status' must be draft or approved, not {value}",
    "edition.bad_revision": "'revision' must be a whole number from 1, not {value}",
    "edition.bad_lists": "'lists' must be a list of recipient list names",
    "edition.not_text": "'{key}' must be text",
    "edition.control_character": "'{key}' contains a line break or control character; keep it on one line",
    "edition.urgent_without_subject": "an urgent message needs a 'subject'",
    "edition.correction_without_text": "revision {revision} is a correction: add 'correction: what changed' (it is "
                                       "shown as 'Rättelse:' at the top of the message), or set 'revision: 1' if "
                                       "nothing has been sent yet",
    "edition.compiled_on_another_day": "'compiled' is {compiled}, but this is the edition of {day} (the file's name); "
                                       "set it to {fixed}, or rename the file (was it copied from another day?)",
    "edition.no_content": "the edition has no content; add sections starting with '## Heading'",
    "edition.no_compiled": "missing required key 'compiled'; add e.g. 'compiled: 2024-11-17 14:00'",
    "edition.bad_compiled": "'compiled' must be a local time like 2024-11-17 14:00, not {value}",
    # email/preflight.py: the message as it would be sent
    "preflight.html_too_large": "the HTML part is {size} KB, over the {limit} KB limit (Gmail clips at 102 KB and "
                                "hides the rest); shorten the edition",
    "preflight.header_too_long": "the {header} header is {octets} octets, over the {limit} allowed per line "
                                 "(RFC 5322); relays may break or reject it",
    "preflight.line_too_long": "line {line} of the message is {octets} octets, over the {limit} allowed per line "
                               "(RFC 5322); relays may break or reject it",
    "preflight.empty_link": "an empty link in the HTML; give every link a real https:// address",
    "preflight.placeholder_link": "a placeholder link {href} in the HTML; give every link a real https:// address",
    "preflight.link_to_missing_id": "a link to {href}, an id the message does not have in the HTML; link to the id "
                                    "of a section of the message, or give a real https:// address",
    "preflight.script_link": "a script link {href} in the HTML; give every link a real https:// address",
    "preflight.image_without_alt": "image {src} has no alt text; add alt=\"\" if it is decorative",
    "preflight.title_differs": "the HTML <title> {title} differs from the Subject {subject}; they must be the same "
                               "(use {{{{ subject }}}})",
    "preflight.text_part_lacks_words": "the text part lacks words the HTML has ({words}); render both from the same "
                                       "content",
    # recipients/: recipient lists and the suppression list
    "file.unreadable": "cannot read the file: {detail}",
    "recipients.bad_suppressed_address": "suppressed address {address} is not valid: {detail}",
    "recipients.suppressed_not_utf8": "the file is not UTF-8; save it as UTF-8",
    "recipients.unknown_list": "unknown recipient list {name}; known lists: {known}",
    "recipients.unknown_list_none_known": "unknown recipient list {name}; known lists: none",
    "recipients.directory_not_synced": "list {list} is read from the directory {directory} and has no accepted snapshot yet: run "
                                       "'dispatch recipients sync {list}'",
    "recipients.directory_members_too": "a directory list takes its members from the directory: remove 'members' (or remove 'source' to "
                                        "keep the list by hand)",
    "recipients.directory_unknown_key": "unknown key {key} in a directory list; known keys: {known}",
    "recipients.directory_source_not_text": "'source' must name a directory under directories: in config.yaml",
    "recipients.directory_unknown": "source: {directory} names no directory in config.yaml; known directories: {known}",
    "recipients.directory_none_configured": "source: {directory} names a directory, but config.yaml has no directories:; add it there "
                                            "(docs/how-to/directory-lists.md)",
    "recipients.directory_not_text": "'{key}' must be text on one line: a group's DN (or Graph object id) for group, an LDAP filter for "
                                     "filter",
    "recipients.directory_group_and_filter": "a directory list takes 'group' or 'filter', not both; keep one",
    "recipients.directory_needs_group": "a directory list needs 'group' (a group's DN, or a Graph group's object id) or 'filter' (an LDAP"
                                        " filter)",
    "recipients.directory_filter_needs_ldap": "'filter' needs an LDAP directory; {directory} is Microsoft Graph: name a group's object id"
                                              " in 'group'",
    "recipients.directory_bad_filter": "'filter' must be an LDAP filter with its parentheses paired, like (department=Vård), not {filter}",
    "recipients.directory_bad_attributes": "'attributes' must map mail and name to the directory's attribute names, like {{mail: mail, "
                                           "name: displayName}}",
    "recipients.directory_bad_max_shrink": "'max_shrink' must be a fraction from 0 to 1 (0.1: a sync may lose 10 % of the list before a "
                                           "person must accept it), not {value}",
    "recipients.include_cycle": "include cycle: {cycle}; remove one of these includes",
    "recipients.control_character_in_address": "the address contains a line break or control character; remove it "
                                               "(it could inject a mail header)",
    "recipients.control_character_in_name": "the name contains a line break or control character; remove it "
                                            "(it could inject a mail header)",
    "recipients.invalid_address": "invalid address {address}: {detail}",
    "recipients.not_utf8": "the file is not UTF-8; export it as 'CSV UTF-8'",
    "recipients.removed_while_read": "the file was removed while it was being read; run again",
    "recipients.no_email_column": "the first row must be a header with an 'email' column (and optionally 'name'); "
                                  "found {found}",
    "recipients.bad_csv_row": "cannot read this CSV row: {detail}",
    "recipients.yaml_not_a_list": "a YAML list needs 'name' and 'members' (and optionally 'include')",
    "recipients.control_character_in_list_name": "the list name contains a line break or control character; the file "
                                                 "name is used instead",
    "recipients.bad_members": "'members' must be a list of {{email, name}}",
    "recipients.member_not_a_mapping": "each member needs an 'email' (and optionally a 'name')",
    "recipients.member_without_email": "this member has no 'email' text",
    "recipients.bad_include": "'include' must list other recipient list names",
    # Directory lists and their snapshots (recipients/snapshots.py, app/directory.py)
    "recipients.not_a_directory_list": "{name} is not a directory list (its file has no 'source:'); only directory "
                                       "lists are synced",
    "snapshot.empty": "the directory returned nobody",
    "snapshot.shrank": "{percent} % smaller than the last accepted snapshot ({before} -> {after} members; "
                       "the limit is {limit} %)",
    "snapshot.age": ("list {list}: snapshot {snapshot} ({members} members), last confirmed by a sync {count} minute ago",
                     "list {list}: snapshot {snapshot} ({members} members), last confirmed by a sync {count} minutes ago"),
    "snapshot.held_note": "list {list}: a change is held (snapshot {snapshot}: {reason}); sends use the last accepted "
                          "snapshot; see dispatch recipients diff {list}",
    "snapshot.failing": "list {list}: the last sync failed ({reason}); sends use the last accepted snapshot",
    "snapshot.stale": "list {list}: not synced for a while; is dispatch serve running?",
    "audit_detail.snapshot_accepted": "snapshot {snapshot}: {members} members, {added} added, {removed} removed",
    # control/approval.py: the approval rule's reasons
    "gate.approved_in_file": "approved ('status: approved' in the file)",
    "gate.draft": "the edition is a draft ('status: {status}'); set 'status: approved' to send it "
                  "(or test it with send --to ADDR)",
    "gate.approved": "approved by {approver} at {when} (content {content})",
    "gate.approved_only_by_editor": "approved only by its own editor {approver}; another person must approve it "
                                    "(dispatch approve --date {day} --by NAME)",
    "gate.changed_after_approval": "changed after approval by {approver} at {when} (approved content {approved}, "
                                   "now {now}); the new content needs a new approval: "
                                   "dispatch approve --date {day} --by NAME",
    "gate.revoked": "the approval by {approver} was revoked by {revoker} at {when}; approve it again to send it",
    "gate.not_approved": "not approved yet: another person must approve this content: "
                         "dispatch approve --date {day} --by NAME",
    "gate.not_approved_by_other": "not approved yet: another person (its editor {editors} cannot) must approve this "
                                  "content: dispatch approve --date {day} --by NAME",
    "gate.approver_wrote_it": "{approver} wrote this content (its last editor) and cannot also approve it; "
                              "another person must approve (four eyes)",
    # who let a dispatch go, where no person did (the history's and the export's 'approved_by')
    "approval.by_front_matter": "status: approved (front matter)",
    # app/: change control's refusals
    "refusal.not_sendable": "not sendable: {reason}",
    "refusal.not_published": "not published: {reason}",
    "approve.changed_while_read": "the edition changed while {approver} was reading it (content {seen} then, {now} "
                                  "now); read it again and approve what is there now",
    "approve.without_seen": "the approval does not say which content the approver read (no 'seen'); open the edition "
                            "again, read it and approve what is there",
    # app/drafting: the status field as the approval (approval: front_matter), set in the console
    "status.approve_needs_approver": "{user} may not approve: only an approver may set 'status: approved'",
    "status.approve_own_change": "{user} is changing the text and so cannot also approve it: nobody approves a text "
                                 "they saved; save it as a draft and let another person approve it",
    "status.approve_with_problems": "the saved edition has problems and cannot be approved; fix them first",
    "change.already_sent": "this edition was already sent to {reached} recipient(s) as {name} ({when}, content "
                           "{sent}, now {now}); {what}. A sent edition is final: to correct it, set "
                           "'revision: {revision}' and 'correction: <what changed>' in the front matter, then check "
                           "and send it (the correction goes to everyone on the lists)",
    "change.already_sent_interrupted": "this edition was already sent to {reached} recipient(s) as {name} ({when}, "
                                       "content {sent}, now {now}); {what}. A sent edition is final: to correct it, "
                                       "set 'revision: {revision}' and 'correction: <what changed>' in the front "
                                       "matter, then check and send it (the correction goes to everyone on the "
                                       "lists). To finish the interrupted dispatch instead, restore the text as sent",
    "change.file_changed": "the file has changed since (diff below)",
    "change.parts_changed": "the file is unchanged, but {parts} changed since",
    "correction.nothing_sent": "nothing of this edition has been sent: edit it instead",
    "send.confirmation_outdated": "the content changed after the confirmation ({expected} then, {name} now); "
                                  "confirm again",
    # app/control.py TooEarly: an edition is not sent before its 'compiled' time (checked and approved ahead is fine)
    "send.before_compiled": "the edition of {day} is compiled for {compiled}, and it is {today} {now} now: it cannot be sent "
                            "before {compiled}; {then}",
    "check.sendable_from": "the edition of {day} is compiled for {compiled}: send refuses it until then; {then}",
    "sendable.by_hand": "no schedule runs on {day}: send it by hand from {compiled}",
    "sendable.at_slot": "the schedule '{schedule}' sends it then",
    "sendable.slot": "the schedule '{schedule}' sends it at {at}",
    "sendable.slot_before": "the schedule '{schedule}' runs at {at}, before that, and will not send it: set 'compiled' "
                            "to {at}, or send it by hand from {compiled}",
    # app/control.py: why the schedule sends nothing (the office's alert mail, the log)
    "scheduled.no_file": "{path} does not exist",
    "scheduled.problems": "the edition has problems: {problems}",
    "scheduled.changed_after_send": "the edition file has changed since it was sent; a correction needs 'revision' "
                                    "and 'correction'",
    "revoke.nothing_to_revoke": "there is no approval to revoke",
    # app/editions.py: the message on a phone's screen
    "phone.word_too_wide": "on a phone ({limit} px) the message is {width} px wide, so every line scrolls sideways: "
                           "'{word}' does not fit the screen; shorten or break it up",
    "phone.element_too_wide": "on a phone ({limit} px) the message is {width} px wide, so every line scrolls "
                              "sideways: a <{tag}> {element_width} px wide does not fit the screen; shorten or break "
                              "it up",
    # app/readback.py: the message parsed back before it is sent
    "readback.header_differs": "the {header} of the message as it would be sent {difference} when parsed back; nothing "
                               "was sent. This is a fault in dispatch, not in the text: report it with this line",
    "readback.name_too_long": "the name of {address} makes its To line longer than 998 octets; shorten the name",
    "readback.name_differs": "the To header of {address} {difference} when parsed back; check the name for unusual "
                             "characters",
    # app/passwords.py, app/accounts.py: accounts and passwords
    "password.too_short": "the password must be at least {minimum} characters (a few words are easier to remember "
                          "than symbols)",
    "password.unchanged": "the new password is the same as the current one; choose another",
    "password.single_sign_on": "{name} signs in through single sign-on and has no password here; change it at the "
                               "identity provider",
    "password.differs": "the two passwords differ; try again",
    "password.unreadable_file": "cannot read the password file: {detail}",
    "account.bad_name": "the name {name} must be 1-64 letters, digits, '.', '_' or '-' (no spaces): people sign in "
                        "with it",
    "account.bad_role": "the role must be one of {roles}, not {role}",
    # config/yamlsource.py: reading an input file (an edition, a recipient list, the config)
    "file.not_found": "file not found",
    "file.not_regular": "the file is {kind}; dispatch reads only regular files{advice}; {fix}",
    "file.too_large": "the file is {size}, over the {limit} MB limit for {what}; {advice}",
    "file.not_utf8": "not valid UTF-8; save the file as UTF-8",
    "yaml.refused": "{detail}",
    "yaml.nul_byte": "invalid YAML: a NUL byte at column {column} is not allowed; remove it (it may have come with a "
                     "copy and paste)",
    "yaml.control_character": "invalid YAML: the control character {character} at column {column} is not allowed; "
                              "remove it (it may have come with a copy and paste)",
    "yaml.invalid": "invalid YAML: {detail}; check indentation, colons and quotes",
    "yaml.invalid_with_hint": "invalid YAML: {detail}; {hint}",
    "yaml.error": "invalid YAML: {detail}",
    "edition.no_file": "no edition for {day}; write it or pass --date",
    "edition.no_file_at_path": "no edition file; check the path",
    # the command line's other inputs, the config's files
    "send.retry_other_dispatch": "{given} is not the dispatch this send makes ({name}); give the --date or --file of "
                                 "its edition",
    "bounces.no_mailbox": "no bounce mailbox: add a 'bounces:' section with host, username and password_env "
                          "(see docs/how-to/bounces.md)",
    "templates.unreadable": "cannot read the templates: {detail}",
    "dkim.key_file": "dkim.key_file {detail}",
    "schedule.invalid": "schedule {schedule}: {what}: {detail}",
    "template.undefined": "{detail}; check the variable name",
    "template.error": "{detail}",
    # email/subject.py: a subject or preheader template ({what}: subject or preheader)
    "template.too_long": "{what}: the template is {length} characters, over the {limit}-character limit; shorten it",
    "template.syntax_error": "{what}: template syntax error: {detail}",
    "template.statement": "{what}: only text, variables and filters are allowed, like {{{{ title }}}} or "
                          "{{{{ date_label | upper }}}}; '{{% ... %}}' statements (if, for, set, include, macro, ...) "
                          "are not",
    "template.expression": "{what}: only text, variables and filters are allowed, like {{{{ title }}}} or "
                           "{{{{ date_label | upper }}}}; {refused}",
    "template.unknown_variable": "{what}: {detail}; available variables: {variables}",
    "template.failed": "{what}: {detail}",
    "template.result_too_long": "{what}: the {what} is {length} characters once the variables are filled in, over the "
                                "{limit}-character limit; shorten it",
    # the audit log's details (app/passwords.py, app/accounts.py and the other use cases that record)
    "audit_detail.from": "from {remote}",
    "audit_detail.said": "{text}",
    "audit_detail.unknown_user": "unknown user or no password",
    "audit_detail.too_many_unknown_names": "too many unknown names from this address",
    "audit_detail.account_disabled": "account disabled",
    "audit_detail.by_owner": "by the account's owner",
    "audit_detail.sessions_ended": "sessions ended",
    "audit_detail.lock_cleared": "lock cleared",
    "audit_detail.locked_until": "account locked until {until}",
    "audit_detail.attempts_counted": "{attempts} attempts counted: password not checked",
    "audit_detail.wrong_password": "wrong password ({attempt})",
    "audit_detail.wrong_password_during_lock": "wrong password during the lock",
    "audit_detail.right_password_during_lock": "right password: told the lock's end",
    "audit_detail.locked_for": "{attempts} failed sign-ins: locked for {minutes} minutes",
    "audit_detail.single_sign_on": "single sign-on",
    "audit_detail.role_and_address": "role {role}, {address}",
    "audit_detail.role_no_address": "role {role}, no address",
    "audit_detail.role_changed": "role {old} -> {new}",
    "audit_detail.role_changed_by_provider": "role {old} -> {new} (from the identity provider)",
    "audit_detail.email_changed": "email {old} -> {new}",
    "audit_detail.email_changed_by_provider": "email {old} -> {new} (from the identity provider)",
    "audit_detail.role_taken_by_provider": "role {old} -> - (no longer in a group that gives a role, at the identity provider)",
    "audit_detail.sso_held": "the name {taken} belongs to another account; held as {name} (role {role}, {address}) until an "
                      "operator who knows who it is runs: dispatch users enable {name}",
    "audit_detail.sso_held_no_address": "the name {taken} belongs to another account; held as {name} (role {role}, no "
                                 "address) until an operator who knows who it is runs: dispatch users enable {name}",
    "audit_detail.no_console_role": "no console role for {groups}",
    "audit_detail.name_of_local_account": "the name belongs to a local account",
    "audit_detail.disabled_in_console": "the account is disabled in the console",
    "audit_detail.kept_text": "kept text {id}",
    "audit_detail.file": "file {hash}",
    "audit_detail.revision": "revision {revision}",
    "audit_detail.status_field": "by the status field (approval: front_matter)",
    "audit_detail.revision_of": "revision {revision} of {name}",
    "audit_detail.approvals": ("{count} approval(s)", "{count} approval(s)"),
    "audit_detail.recipients": ("{count} recipient(s)", "{count} recipient(s)"),
    "audit_detail.test_recipients": ("{count} recipient(s) (test)", "{count} recipient(s) (test)"),
    "audit_detail.waiting_recipients": ("{count} waiting recipient(s)", "{count} waiting recipient(s)"),
    "audit_detail.export": "{format}",
    # the audit log's actions (the console's log names each)
    **{f"audit.{action}": action.replace("_", " ") for action in AUDIT_ACTIONS},
    # config/credentials.py: the relay's and the bounce mailbox's secrets ({setting}: e.g. transport.password_env)
    "secret.env_unset": "{setting} names {name}, which is not set in the environment; export it (or use password_file)",
    "secret.env_empty": "{setting} names {name}, which is set but empty; export the password in it (or use "
                        "password_file)",
    "secret.no_password": "{setting} is set but no password is: set {section}.password_env (the name of an "
                          "environment variable) or {section}.password_file",
    "secret.file_missing": "{setting} names {file}, which does not exist; create it (or use password_env)",
    "secret.file_is_directory": "{setting} names {file}, which is a directory; name the file that holds the password",
    "secret.file_unreadable": "{setting} names {file}, which cannot be read ({detail}); let the user running dispatch "
                              "read it (or use password_env)",
    "secret.file_empty": "{setting} names {file}, which is empty; put the password in it",
    "secret.command_unsplittable": "{setting} cannot be split into words ({detail}); check its quotes",
    "secret.command_empty": "{setting} is empty; give the command that prints an access token",
    "secret.program_missing": "{setting} runs {program}, which does not exist; give the full path of the token program",
    "secret.program_not_executable": "{setting} runs {program}, which is not executable; chmod +x it",
    "secret.program_not_on_path": "{setting} runs {program}, which is not found on PATH; install it or give its full "
                                  "path",
    "directory.ca_file_unusable": "{setting} names {file}, which cannot be read ({detail}); give the file (PEM) of "
                                  "the CA that signed the directory's certificate",
    # errors.py: an error that is not a problem with an input (English: as str(error) says it)
    "error.said": "{text}",
    "error.ledger": "{detail}",
    "error.ledger_busy": "{detail}",
    "error.transport": "{endpoint}: {detail}",
    "error.directory": "{server}: {detail}",
    "error.signing": "{detail}",
    "error.publish": "{path}: {detail}",
    # recipients/addresses.py: why one address is not usable
    "address.control_character": "the address contains a control character or line break",
    "address.no_at": "an address needs one '@' with text on both sides",
    "address.non_ascii_local_part": "the part before the @ contains non-ASCII characters ({characters}); "
                                    "internationalised mailbox names (SMTPUTF8) are not supported, ask for the "
                                    "person's ASCII address",
    "address.local_part_too_long": "the part before the @ is too long (more than 64 characters)",
    "address.too_long": "the address is longer than 254 characters",
    "address.invalid": "{detail}",
})
