from flask_wtf import FlaskForm
from wtforms import PasswordField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length


class ExplainErrorForm(FlaskForm):
    raw_error = TextAreaField(
        "Meta error",
        validators=[
            DataRequired(message="Paste an error: a JSON response, a log line or an exception message."),
            Length(max=20000, message="Paste at most 20,000 characters."),
        ],
    )
    submit = SubmitField("Explain")


class ImpersonateForm(FlaskForm):
    reason = TextAreaField(
        "Reason (ticket number, what the merchant asked)",
        validators=[DataRequired(message="Give a reason; it is kept in the audit log."), Length(max=500)],
    )
    password = PasswordField(
        "Your password", validators=[DataRequired(message="Enter your own password to confirm it is you.")]
    )
    submit = SubmitField("View as merchant")
