// Served by `anelm serve` (WebPageEndpoints.swift); edit here: this is the file, not a copy of one.
extension WebPage {
    /// `/app.css`: the page's style (responsive down to a phone's width).
    static let style = #"""
:root { --fg: #1d1d1f; --bg: #fafafa; --muted: #666; --line: #d8d8d8; --accent: #0b5cad; --panel: #fff; --user: #e8f0fb; --bad: #a01919; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #eee; --bg: #16181b; --muted: #a0a0a0; --line: #3a3d42; --accent: #6cb0ff; --panel: #1f2226; --user: #22324a; --bad: #ff8a8a; }
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
html, body { margin: 0; height: 100%; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); display: flex; flex-direction: column; }
header { display: flex; align-items: center; gap: 1rem; padding: .4rem .8rem; border-bottom: 1px solid var(--line); flex-wrap: wrap; }
h1 { font-size: 1.1rem; margin: 0; }
h2 { font-size: 1.05rem; margin: .2rem 0 .6rem; }
nav { display: flex; gap: .3rem; }
button, select, input, textarea { font: inherit; color: inherit; }
button { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: .3rem .7rem; cursor: pointer; }
button:hover { border-color: var(--accent); }
button[aria-selected="true"], button.active { background: var(--accent); color: #fff; border-color: var(--accent); }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 1px; }
input, select, textarea { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: .3rem .4rem; }
#notice { margin: .4rem .8rem; padding: .5rem .8rem; border: 1px solid var(--bad); color: var(--bad); border-radius: 6px; }
#key-form { margin: .4rem .8rem; display: flex; gap: .5rem; align-items: center; flex-wrap: wrap; }
main { flex: 1; min-height: 0; display: flex; }
main > section { flex: 1; min-height: 0; padding: .6rem .8rem; overflow: auto; }
main > section[hidden] { display: none; }
#view-chat { display: flex; gap: .8rem; padding: 0; overflow: hidden; }
#view-chat[hidden] { display: none; }
#conversations { width: 14rem; border-right: 1px solid var(--line); padding: .6rem; overflow: auto; }
#conversation-list { list-style: none; padding: 0; margin: .5rem 0 0; }
#conversation-list li { display: flex; gap: .2rem; margin-bottom: .2rem; }
#conversation-list li button:first-child {
  flex: 1; text-align: left; overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
}
#chat-column { flex: 1; min-width: 0; min-height: 0; display: flex; flex-direction: column; padding: .6rem .8rem .6rem 0; }
#settings { margin-bottom: .4rem; }
.settings-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(11rem, 1fr)); gap: .4rem .8rem; padding: .4rem 0; }
.settings-grid label { display: flex; flex-direction: column; font-size: .9rem; color: var(--muted); }
.settings-grid .wide { grid-column: 1 / -1; }
#messages { flex: 1; min-height: 0; overflow: auto; list-style: none; margin: 0; padding: 0; }
.message { margin: .4rem 0; padding: .5rem .7rem; border-radius: 8px; background: var(--panel); border: 1px solid var(--line); }
.message.user { background: var(--user); }
.message .role { font-size: .8rem; color: var(--muted); }
.message .body p { margin: .3rem 0; }
.message pre { background: rgba(127,127,127,.12); padding: .5rem; border-radius: 6px; overflow-x: auto; }
.message code { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: .9em; }
.stats { font-size: .8rem; color: var(--muted); margin-top: .3rem; }
.message .actions { display: flex; gap: .3rem; margin-top: .3rem; flex-wrap: wrap; }
.message .actions button { font-size: .85rem; padding: .1rem .5rem; }
.citation { font-size: .75em; vertical-align: super; padding: 0 .2rem; border: none; background: none; color: var(--accent); cursor: pointer; }
.passages { margin: .4rem 0 0; padding-left: 1.6rem; }
.passages li { margin-bottom: .4rem; }
.passages blockquote {
  margin: .2rem 0; padding-left: .5rem; border-left: 3px solid var(--line); white-space: pre-wrap; color: var(--muted); max-height: 10rem; overflow: auto;
}
.passages .source { font-size: .85rem; word-break: break-all; }
.marked { font-weight: bold; }
.error-text { color: var(--bad); }
#composer { display: flex; flex-direction: column; gap: .3rem; margin-top: .4rem; }
#prompt { width: 100%; resize: vertical; }
.composer-actions { display: flex; gap: .5rem; align-items: center; justify-content: flex-end; flex-wrap: wrap; }
.composer-actions label { margin-right: auto; }
.uploads { display: flex; gap: 1rem; flex-wrap: wrap; margin-bottom: .6rem; }
#upload-progress { margin-bottom: .6rem; }
table { border-collapse: collapse; width: 100%; margin-top: .6rem; }
caption { text-align: left; font-weight: bold; padding: .3rem 0; }
th, td { text-align: left; padding: .3rem .4rem; border-bottom: 1px solid var(--line); vertical-align: top; }
td.path { word-break: break-all; }
#status { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
#status dt { color: var(--muted); }
#status dd { margin: 0; }
.visually-hidden {
  position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap;
}
@media (max-width: 700px) {
  #view-chat { flex-direction: column; }
  #conversations { flex: none; width: auto; border-right: none; border-bottom: 1px solid var(--line); max-height: 6rem; }
  #chat-column { padding: .4rem; }
  header { gap: .5rem; }
}
"""#
}
