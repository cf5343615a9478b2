;; validate reports a waPC guest error.
;;
;; A waPC guest written by hand: `protocol_version` answers "v1", `validate_settings` accepts
;; everything, and `validate` accepts with message "N" (N = calls served by this instance,
;; one digit) unless the request uid starts with "f", which triggers the fault:
;; __guest_error("validate failed on purpose") and return 0.
;; The host under test must answer the fault with `allowed: false`, code 500, and serve the
;; next request from a fresh instance (message "1" again). See host/tests/limits.rs.
(module
  (import "wapc" "__guest_request" (func $request (param i32 i32)))
  (import "wapc" "__guest_response" (func $respond (param i32 i32)))
  (import "wapc" "__guest_error" (func $error (param i32 i32)))
  (memory (export "memory") 1)
  (global $calls (mut i32) (i32.const 0))
  (data (i32.const 4096) "\"v1\"")
  (data (i32.const 4112) "{\"valid\":true}")
  (data (i32.const 4128) "{\"accepted\":true,\"message\":\"0\"}")
  (data (i32.const 4200) "validate failed on purpose")
  (func $fault (result i32)
    (call $error (i32.const 4200) (i32.const 26))
    (i32.const 0)
  )
  ;; op name at 0, payload at 8192: {"request":{"uid":"X"...},...} puts X at 8192 + 19.
  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (call $request (i32.const 0) (i32.const 8192))
    (if (i32.eq (local.get $op_len) (i32.const 16))
      (then (call $respond (i32.const 4096) (i32.const 4)) (return (i32.const 1))))
    (if (i32.eq (local.get $op_len) (i32.const 17))
      (then (call $respond (i32.const 4112) (i32.const 14)) (return (i32.const 1))))
    (if (i32.eq (i32.load8_u (i32.const 8211)) (i32.const 102))
      (then (return (call $fault))))
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (i32.store8 (i32.const 4156) (i32.add (i32.const 48) (global.get $calls)))
    (call $respond (i32.const 4128) (i32.const 31))
    (i32.const 1)))
