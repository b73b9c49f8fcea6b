"""REST API of the after-sales core: /api/v1/aftersales/… (thin views over services and selectors)."""
