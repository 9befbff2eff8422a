"""Lambda function code (CodeUri); the handler is app.lambda_handler."""
