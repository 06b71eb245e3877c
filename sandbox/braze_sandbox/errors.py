"""The `errors[].type` values the sandbox answers with.

Codes in capitals are the ones Braze documents (braze-api.md, "Known error codes"); for the rules
Braze documents without a code, the type is an English sentence, as Braze's own often is.
"""

EMAIL_BAD_FORMAT = "EMAIL_BAD_FORMAT"
BAD_PUSH_TOKEN_APP_ID = "BAD_PUSH_TOKEN_APP_ID"
BAD_PUSH_TOKEN_STRING = "BAD_PUSH_TOKEN_STRING"
BAD_PUSH_TOKEN_VALUE = "BAD_PUSH_TOKEN_VALUE"
BAD_PUSH_TOKEN_IMPORT = "BAD_PUSH_TOKEN_IMPORT"
BAD_DEVICE_ID = "BAD_DEVICE_ID"
BAD_EMAIL_SUBSCRIPTION_STATE = "BAD_EMAIL_SUBSCRIPTION_STATE"
BAD_PUSH_SUBSCRIPTION_STATE = "BAD_PUSH_SUBSCRIPTION_STATE"
EXTERNAL_USER_ID_TOO_LARGE = "EXTERNAL_USER_ID_TOO_LARGE"
BLACKLISTED_EXTERNAL_USER_ID = "BLACKLISTED_EXTERNAL_USER_ID"

NOT_AN_OBJECT = "Each attributes, events and purchases entry must be a JSON object"
MISSING_IDENTIFIER = (
    "Missing user identifier: one of external_id, user_alias, braze_id, email or phone is required"
)
MULTIPLE_IDENTIFIERS = "Only one of external_id, user_alias or braze_id may identify the user"
BAD_EXTERNAL_ID = "external_id must be a non-empty string"
BAD_USER_ALIAS = "user_alias must be an object with string alias_name and alias_label"
BAD_BRAZE_ID = "braze_id must be a non-empty string"
BAD_UPDATE_EXISTING_ONLY = "_update_existing_only must be a boolean"
BAD_MERGE_OBJECTS = "_merge_objects must be a boolean"
DOLLAR_ATTRIBUTE_NAME = "Attribute names must not start with '$'"
EMPTY_ATTRIBUTE_NAME = "Attribute names must not be empty"
BAD_GENDER = "gender must be one of M, F, O, N, P or null"
BAD_DOB = "dob must be a date written YYYY-MM-DD"
BAD_COUNTRY = "country must be an ISO-3166-1 alpha-2 code"
BAD_LANGUAGE = "language must be an ISO-639-1 code"
BAD_STRING_FIELD = "This profile field must be a string"
BAD_DATE_FIELD = "This profile field must be an ISO 8601 date"
BAD_BOOLEAN_FIELD = "This profile field must be a boolean"
BAD_CURRENT_LOCATION = "current_location must be {longitude, latitude} with numbers in range"
BAD_SUBSCRIPTION_GROUPS = "subscription_groups must be a list of {subscription_group_id, subscription_state}"
BAD_INCREMENT = '{"inc": n} needs an integer n'
BAD_ITEM_OPERATION = (
    'Array of objects updates take {"$add": [objects]}, {"$remove": [{"$identifier_key", "$identifier_value"}]} '
    'and {"$update": [{"$identifier_key", "$identifier_value", "$new_object"}]}'
)
BAD_ARRAY_OPERATION = 'Array updates take {"add": [...]} and/or {"remove": [...]}'
BAD_ARRAY_VALUE = "Array attributes hold strings, numbers, booleans or objects (one dimension, no null)"
BAD_PUSH_TOKENS = "push_tokens must be a list of {app_id, token, device_id?} objects"

MISSING_EVENT_NAME = "Event name is required and must be a non-empty string"
MISSING_TIME = "time is required"
BAD_TIME = "time must be an ISO 8601 datetime"
BAD_APP_ID = "app_id must be a string"
BAD_PROPERTIES = "properties must be an object"
TOO_MANY_PROPERTIES = "properties may hold at most 256 keys"
BAD_PROPERTY_NAME = "Property names must be non-empty strings of at most 255 characters not starting with '$'"
RESERVED_PROPERTY_NAME = "properties uses a reserved key"
PROPERTIES_TOO_LARGE = "properties with arrays or objects may be at most 50 KB"
MISSING_PRODUCT_ID = "product_id is required and must be a non-empty string"
PRODUCT_ID_TOO_LONG = "product_id may be at most 255 characters"
MISSING_CURRENCY = "currency is required"
BAD_CURRENCY = "currency must be an ISO 4217 alphabetic code"
MISSING_PRICE = "price is required"
BAD_PRICE = "price must be a number"
BAD_QUANTITY = "quantity must be an integer from 1 to 100"
