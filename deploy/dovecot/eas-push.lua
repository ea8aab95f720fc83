-- eas-gateway push events for Dovecot 2.3 (push_notification Lua driver).
--
-- Posts every change of a user's mailboxes to the gateway's mail events listener
-- (push.events_listen, push.source = "events"), one small JSON body per mailbox and
-- transaction:
--
--   POST <eas_push_url>   Authorization: Bearer <eas_push_secret>
--   {"user":"alice@example.org","mailbox":"INBOX","event":"MessageNew"}
--
-- Settings (plugin section, or userdb fields of the same names, which win):
--   eas_push_url      e.g. http://127.0.0.1:8081/eas-gateway/mail-events; empty: nothing is sent
--   eas_push_secret   the gateway's push.events_secret (e.g. `eas_push_secret = </etc/...`)
--
-- The post is made when the transaction ends, synchronously in the imap/lmtp process, with a
-- short timeout: a gateway that is down costs each change at most that long, and the change
-- itself is never refused. See deploy/dovecot/README.md.

local TIMEOUT_MSECS = 1000

local client = nil

local function http_client()
  if client == nil then
    client = dovecot.http.client({
      request_timeout_msecs = TIMEOUT_MSECS,
      max_attempts = 1,
      max_idle_time_msecs = 5000,
      user_agent = "dovecot-eas-push",
    })
  end
  return client
end

local function json_string(s)
  s = tostring(s or "")
  s = s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == '\\' then return '\\\\' end
    return string.format("\\u%04x", c:byte())
  end)
  return '"' .. s .. '"'
end

function dovecot_lua_notify_begin_txn(user)
  local url = user:plugin_getenv("eas_push_url")
  if url == nil or url == "" then
    return { url = nil }
  end
  return {
    url = url,
    secret = user:plugin_getenv("eas_push_secret") or "",
    user = user.username,
    events = {},
    seen = {},
  }
end

local function add(ctx, event, name)
  if ctx.url == nil then
    return
  end
  local mailbox = event.mailbox or ""
  -- One post per mailbox and kind of change: the gateway reads the mailbox's state anyway.
  local kind = name:match("^Mailbox") and name or "Message"
  local key = kind .. "\0" .. mailbox
  if ctx.seen[key] then
    return
  end
  ctx.seen[key] = true
  table.insert(ctx.events, { mailbox = mailbox, event = name })
end

function dovecot_lua_notify_event_message_new(ctx, event) add(ctx, event, "MessageNew") end
function dovecot_lua_notify_event_message_append(ctx, event) add(ctx, event, "MessageAppend") end
function dovecot_lua_notify_event_message_expunge(ctx, event) add(ctx, event, "MessageExpunge") end
function dovecot_lua_notify_event_message_read(ctx, event) add(ctx, event, "MessageRead") end
function dovecot_lua_notify_event_message_trash(ctx, event) add(ctx, event, "MessageTrash") end
function dovecot_lua_notify_event_flags_set(ctx, event) add(ctx, event, "FlagsSet") end
function dovecot_lua_notify_event_flags_clear(ctx, event) add(ctx, event, "FlagsClear") end
function dovecot_lua_notify_event_mailbox_create(ctx, event) add(ctx, event, "MailboxCreate") end
function dovecot_lua_notify_event_mailbox_delete(ctx, event) add(ctx, event, "MailboxDelete") end
function dovecot_lua_notify_event_mailbox_rename(ctx, event) add(ctx, event, "MailboxRename") end

function dovecot_lua_notify_end_txn(ctx)
  if ctx.url == nil then
    return
  end
  for _, e in ipairs(ctx.events) do
    local body = '{"user":' .. json_string(ctx.user) .. ',"mailbox":' .. json_string(e.mailbox)
      .. ',"event":' .. json_string(e.event) .. '}'
    local request = http_client():request({ url = ctx.url, method = "POST" })
    request:add_header("Authorization", "Bearer " .. ctx.secret)
    request:add_header("Content-Type", "application/json")
    request:set_payload(body)
    local ok, response = pcall(request.submit, request)
    if not ok then
      dovecot.i_warning("eas-push: posting to " .. ctx.url .. " failed: " .. tostring(response))
    else
      local status = response:status()
      if status < 200 or status >= 300 then
        dovecot.i_warning("eas-push: " .. ctx.url .. " answered " .. tostring(status)
          .. " " .. tostring(response:reason()))
      end
    end
  end
end
