"""Pure rendering: the CloudFormation template (troposphere) and the host user-data (jinja2). No AWS calls."""
