// Served by `anelm serve` (WebPageEndpoints.swift); edit here: this is the file, not a copy of one.
extension WebPage {
    /// The page at `/`: its markup (script and style are separate files, as the Content-Security-Policy wants).
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>anelm</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body>
<header>
  <h1>anelm</h1>
  <nav role="tablist" aria-label="Views">
    <button role="tab" id="tab-chat" aria-controls="view-chat" aria-selected="true">Chat</button>
    <button role="tab" id="tab-documents" aria-controls="view-documents" aria-selected="false">Documents</button>
    <button role="tab" id="tab-feedback" aria-controls="view-feedback" aria-selected="false">Feedback</button>
  </nav>
</header>
<div id="notice" role="alert" hidden></div>
<form id="key-form" hidden>
  <label for="key-input">This server needs an API key:</label>
  <input id="key-input" type="password" autocomplete="off" required>
  <button type="submit">Use key</button>
</form>
<main>
<section id="view-chat" role="tabpanel" aria-labelledby="tab-chat">
  <aside id="conversations">
    <button id="new-conversation" type="button">New conversation</button>
    <ul id="conversation-list" aria-label="Conversations"></ul>
  </aside>
  <div id="chat-column">
    <details id="settings">
      <summary>Model and settings</summary>
      <div class="settings-grid">
        <label>Model <select id="model"></select></label>
        <label>Temperature <input id="temperature" type="number" min="0" max="2" step="0.1" value="0.7"></label>
        <label>Top p <input id="top-p" type="number" min="0" max="1" step="0.05" value="0.95"></label>
        <label>Max tokens <input id="max-tokens" type="number" min="1" step="1" value="512"></label>
        <label class="wide">System prompt <textarea id="system-prompt" rows="2"></textarea></label>
      </div>
    </details>
    <ol id="messages" aria-live="polite" aria-label="Messages"></ol>
    <form id="composer">
      <label for="prompt" class="visually-hidden">Message</label>
      <textarea id="prompt" rows="3" placeholder="Message (Enter sends, Shift+Enter for a new line, Escape stops)"></textarea>
      <div class="composer-actions">
        <label title="Answer from the documents in the store, with numbered citations"><input id="use-documents" type="checkbox"> Use documents</label>
        <button id="send" type="submit">Send</button>
        <button id="stop" type="button" hidden>Stop</button>
      </div>
    </form>
  </div>
</section>
<section id="view-documents" role="tabpanel" aria-labelledby="tab-documents" hidden>
  <h2>Documents</h2>
  <p>Files are indexed as <code>anelm index</code> indexes them: chunked, embedded and searchable by “Use documents” in the chat.</p>
  <div class="uploads">
    <label>Add files <input id="add-files" type="file" multiple></label>
    <label>Add a folder <input id="add-folder" type="file" webkitdirectory multiple></label>
  </div>
  <div id="upload-progress" hidden><progress id="upload-bar" value="0" max="1"></progress> <span id="upload-text"></span></div>
  <table id="documents">
    <caption id="documents-caption">Indexed documents</caption>
    <thead><tr>
      <th scope="col">Document</th><th scope="col">Chunks</th><th scope="col">Bytes</th><th scope="col"><span class="visually-hidden">Actions</span></th>
    </tr></thead>
    <tbody id="document-rows"></tbody>
  </table>
</section>
<section id="view-feedback" role="tabpanel" aria-labelledby="tab-feedback" hidden>
  <h2>Feedback and the relevance model</h2>
  <p>Rate grounded answers (good / bad answer) and their passages (used / not relevant) in the chat; the relevance model learns from these marks.</p>
  <dl id="status"></dl>
  <button id="train" type="button">Train now</button>
  <p id="train-result" aria-live="polite"></p>
  <table id="versions">
    <caption>Relevance model versions</caption>
    <thead><tr>
      <th scope="col">Version</th><th scope="col">Accepted</th><th scope="col">Trained</th>
      <th scope="col">nDCG@5 before → after</th><th scope="col">recall@5 before → after</th>
    </tr></thead>
    <tbody id="version-rows"></tbody>
  </table>
</section>
</main>
</body>
</html>
"""#
}
