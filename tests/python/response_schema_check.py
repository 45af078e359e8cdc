"""Validates answers against the schema the OpenAPI document gives them.

Usage: response_schema_check.py OPENAPI_JSON ANSWERS_JSON, where ANSWERS_JSON is
[{"path": "/monitor/performance", "method": "get", "status": "200", "body": {...}}, ...].
Each body must validate against its operation's response schema for that status (OpenAPI
3.1, the document's own $refs resolved); a body one of several shapes of a oneOf fits must
fit exactly one.
"""

import json
import sys

from openapi_schema_validator import OAS31Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012


def main(doc_path, answers_path):
    with open(doc_path) as f:
        doc = json.load(f)
    with open(answers_path) as f:
        answers = json.load(f)
    registry = Registry().with_resource("urn:openapi", Resource(contents=doc, specification=DRAFT202012))
    for answer in answers:
        op = doc["paths"][answer["path"]][answer["method"]]
        schema = op["responses"][answer["status"]]["content"]["application/json"]["schema"]
        # The document's refs are '#/components/...': resolve them against the document.
        wrapped = {"$ref": "urn:openapi#" + schema["$ref"][1:]} if "$ref" in schema else schema
        validator = OAS31Validator(wrapped, registry=registry)
        errors = sorted(validator.iter_errors(answer["body"]), key=str)
        if errors:
            raise SystemExit(f"{answer['method']} {answer['path']} {answer['status']}: {errors[0].message}")
        print(f"{answer['method']} {answer['path']} {answer['status']}: valid")
    print("all answers valid")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
