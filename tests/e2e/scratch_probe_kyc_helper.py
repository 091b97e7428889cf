from tests.conftest import bearer, login, ADMIN_PHONE

async def test_probe(client, outbox_path, app):
    token, body = await login(client, outbox_path)
    h = bearer(token)
    reqs = [
        ("POST", "/api/v1/wallet/deposits", dict(content=b"{bad")),
        ("POST", "/api/v1/wallet/deposits", dict(content=b"[]")),
        ("POST", "/api/v1/wallet/deposits", dict(content=b"")),
        ("POST", "/api/v1/wallet/deposits", dict(json={"amount": "1000", "idempotency_key": "a"})),
        ("POST", "/api/v1/wallet/deposits", dict(json={"amount": 1000.0, "idempotency_key": "a"})),
        ("POST", "/api/v1/wallet/deposits", dict(json={"amount": 1000.5, "idempotency_key": "a"})),
        ("POST", "/api/v1/wallet/deposits", dict(json={"amount": True, "idempotency_key": "a"})),
        ("POST", "/api/v1/wallet/deposits", dict(json={"amount": 1000, "idempotency_key": "a"*100_000})),
        ("POST", "/api/v1/wallet/deposits", dict(json={"amount": 1000, "idempotency_key": "a"*50_000})),
        ("POST", "/api/v1/wallet/deposits", dict(json={"amount": 2**70, "idempotency_key": "a"})),
        ("POST", "/api/v1/wallet/deposits", dict(content=b"null")),
        ("POST", "/api/v1/wallet/deposits", dict(content=b"\xff\xfe")),
        ("POST", "/api/v1/wallet/deposits", dict(content=b'{"amount": 1000, "idempotency_key": "a"}', headers={"content-type": "text/plain"})),
        ("GET", "/api/v1/auth/otp", {}),
        ("DELETE", "/api/v1/wallet", {}),
        ("GET", "/api/v1/nope", {}),
        ("POST", "/api/v1/admin/kyc/abc/decision", dict(json={"decision": "VERIFIED"})),
        ("POST", f"/api/v1/admin/kyc/{2**64}/decision", dict(json={"decision": "VERIFIED"})),
        ("POST", f"/api/v1/admin/kyc/{2**63}/decision", dict(json={"decision": "VERIFIED"})),
        ("POST", f"/api/v1/admin/kyc/0/decision", dict(json={"decision": "VERIFIED"})),
        ("POST", f"/api/v1/admin/kyc/-1/decision", dict(json={"decision": "VERIFIED"})),
        ("GET", "/api/v1/wallet/transactions?limit=0", {}),
        ("GET", "/api/v1/wallet/transactions?limit=201", {}),
        ("GET", "/api/v1/wallet/transactions?limit=abc", {}),
        ("GET", "/api/v1/wallet/transactions?cursor=garbage", {}),
        ("GET", "/api/v1/wallet/transactions?cursor=" + "a"*100, {}),
        ("GET", "/api/v1/wallet/transactions?limit=1&limit=2", {}),
        ("POST", "/api/v1/auth/otp", dict(json={"phone": "12345"})),
        ("POST", "/api/v1/auth/otp", dict(json={"phone": 12345})),
        ("POST", "/api/v1/auth/verify", dict(json={"phone": "+919812345678", "otp": "12ab56"})),
        ("POST", "/api/v1/referrals", dict(json={"code": None})),
        ("POST", "/api/v1/referrals", dict(json={"code": "\u0000\u0000"})),
        ("POST", "/api/v1/referrals", dict(json={"code": "ÄÄÄÄÄÄÄÄ"})),
        ("POST", "/api/v1/kyc", dict(json={"pan": "abcde1234f", "name": "A", "bank_account": "123456789", "ifsc": "ABCD0123456", "x": 1})),
        ("POST", "/api/v1/kyc", dict(json={"pan": "abcde1234f", "name": "A\u0000", "bank_account": "١٢٣٤٥٦٧٨٩", "ifsc": "ABCD0123456"})),
    ]
    for method, url, kw in reqs:
        hh = dict(h); hh.update(kw.pop("headers", {}))
        r = await client.request(method, url, headers=hh, **kw)
        print(method, url[:70], r.status_code, r.text[:200])
