-- The realistic ~1 KB TaskRun rows of the benchmark, as a bulk-create template for
-- POST /_emulator/runs/bulk ("{{i}}" becomes the run's index).
local M = {}

function M.template(tag, status)
  return {
    taskIdentifier = "process-order",
    status = status or "COMPLETED_SUCCESSFULLY",
    tags = { tag, "user:{{i}}", "org:acme" },
    startedAt = "2025-01-10T12:00:00.250Z",
    completedAt = "2025-01-10T12:00:03.875Z",
    usageDurationMs = 3625,
    costInCents = 0.0362,
    baseCostInCents = 0.0025,
    ttl = "10m",
    idempotencyKey = "order-{{i}}",
    payloadType = "application/json",
    payload = '{"orderId":"ord_{{i}}","userId":"user_{{i}}","items":[{"sku":"SKU-1001","qty":2,'
      .. '"price":19.99},{"sku":"SKU-2002","qty":1,"price":5.5}],"currency":"EUR",'
      .. '"shipping":{"method":"express","country":"DE"}}',
    outputType = "application/super+json",
    output = '{"json":{"ok":true,"invoiceId":"inv_{{i}}","total":45.48,"chargedAt":'
      .. '"2025-01-10T12:00:03.750Z","attempts":1,"ledgerId":"9007199254740993"},'
      .. '"meta":{"values":{"chargedAt":["Date"],"ledgerId":["bigint"]}}}',
    metadataType = "application/json",
    metadata = '{"progress":1,"step":"done","stepsDone":5,"stepsTotal":5,'
      .. '"lastLog":"invoice sent to the customer"}',
  }
end

return M
