"""Conformance: catalogs and their asynchronous item endpoints.

Pages (braze.com/docs/api/endpoints/catalogs/): catalog_management/synchronous/get_list_catalogs ("List
catalogs": fields and types), catalog_management/synchronous/post_create_catalog, and
catalog_items/asynchronous/ post_create_catalog_items_bulk, patch_catalog_items_bulk, put_update_catalog_items,
delete_catalog_items_bulk ("Request parameters": at most 50 items; "Response": 202, 400, 404; "Troubleshooting":
the error ids; "Rate limit": 16,000 requests per minute shared by the asynchronous catalog item endpoints).
"""

from __future__ import annotations

FIELDS = [{"name": "id", "type": "string"}, {"name": "title", "type": "string"}, {"name": "price", "type": "number"},
          {"name": "in_stock", "type": "boolean"}, {"name": "released", "type": "time"}]


def create(api, name="products", fields=FIELDS):
    return api.http.post("/catalogs", json={"catalogs": [{"name": name, "description": "d", "fields": fields}]})


def items(api, method, name="products", body=None, **kw):
    return api.http.request(method, f"/catalogs/{name}/items", json=body if body is not None else kw)


def held(api, name="products") -> dict:
    return api.http.get("/_sandbox/catalogs").json()["catalogs"][name]["items"]


def test_rule_list_catalogs_returns_fields_and_types(api):
    assert create(api).status_code == 201
    r = api.http.get("/catalogs")
    assert r.status_code == 200 and r.json()["message"] == "success"
    (catalog,) = r.json()["catalogs"]
    assert catalog["name"] == "products" and catalog["fields"] == FIELDS and catalog["num_items"] == 0


def test_rule_create_edit_update_delete(api):
    create(api)
    a = {"id": "a", "title": "A", "price": 1.5, "in_stock": True, "released": "2024-01-01T00:00:00Z"}
    b = {"id": "b", "title": "B", "price": 2, "in_stock": False, "released": "2024-01-02T00:00:00Z"}
    r = items(api, "POST", items=[a, b])
    assert r.status_code == 202 and r.json() == {"message": "success"}
    assert items(api, "PATCH", items=[{"id": "a", "price": 3}]).status_code == 202  # only `price` changes
    assert held(api)["a"] == {**a, "price": 3}
    assert items(api, "PUT", items=[{"id": "b", "title": "B2"}, {"id": "c", "title": "C"}]).status_code == 202
    assert held(api)["b"] == {"id": "b", "title": "B2"} and held(api)["c"] == {"id": "c", "title": "C"}  # replaced, created
    assert items(api, "DELETE", items=[{"id": "a"}, {"id": "nope"}]).status_code == 202
    assert sorted(held(api)) == ["b", "c"]
    assert items(api, "POST", items=[{"id": "b", "title": "again"}]).status_code == 202  # a create never edits
    assert held(api)["b"]["title"] == "B2"


def test_rule_at_most_50_items_per_request(api):
    create(api)
    r = items(api, "POST", items=[{"id": f"i{n}"} for n in range(51)])
    assert r.status_code == 400 and r.json()["errors"][0]["id"] == "request-includes-too-many-items"
    assert r.json()["message"] == "Invalid Request" and held(api) == {}


def test_rule_errors_named_as_the_troubleshooting_tables(api):
    create(api)
    cases = [
        ("POST", {"items": [{"title": "x"}]}, "items-missing-ids"),
        ("POST", {"items": [{"id": 5}]}, "ids-not-strings"),
        ("POST", {"items": [{"id": "x" * 251}]}, "ids-too-large"),
        ("POST", {"items": [{"id": "a b"}]}, "invalid-ids"),
        ("POST", {"items": [{"id": "a"}, {"id": "a"}]}, "ids-not-unique"),
        ("PATCH", {"items": [{"id": "a", "colour": "red"}]}, "invalid-fields"),
        ("PUT", {"items": [{"id": "a", "price": "cheap"}]}, "unable-to-coerce-value"),
        ("POST", {"items": [{"id": "a", "title": "x" * 5001}]}, "items-too-large"),
        ("POST", {"items": "nope"}, "item-array-invalid"),
    ]
    for method, body, code in cases:
        r = items(api, method, body=body)
        assert (r.status_code, r.json()["errors"][0]["id"]) == (400, code), code
    r = items(api, "POST", name="missing", items=[{"id": "a"}])
    assert r.status_code == 404 and r.json()["errors"][0]["id"] == "catalog-not-found"


def test_rule_item_endpoints_share_one_rate_limit_with_headers(make_api):
    api = make_api(catalog_rate_limit="3/60s")
    create(api)
    codes = [items(api, m, items=[{"id": "a"}]).status_code for m in ("POST", "PATCH", "DELETE", "PUT")]
    assert codes == [202, 202, 202, 429]
    r = items(api, "PUT", items=[{"id": "a"}])
    assert r.headers["X-RateLimit-Limit"] == "3" and r.headers["X-RateLimit-Remaining"] == "0"
    assert api.http.get("/catalogs").status_code == 200  # the synchronous catalog endpoints have their own


def test_rule_catalogs_need_the_api_key(api):
    r = api.http.get("/catalogs", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
