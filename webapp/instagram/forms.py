from flask_wtf import FlaskForm
from wtforms import BooleanField, SubmitField
from wtforms.validators import DataRequired


class ConnectForm(FlaskForm):
    submit = SubmitField("Connect Instagram")


class DisconnectForm(FlaskForm):
    confirm = BooleanField(
        "I understand that product feeds and shoppable posts stop until Instagram is connected again.",
        validators=[DataRequired(message="Tick the box to confirm.")],
    )
    submit = SubmitField("Disconnect Instagram")


class SwitchForm(FlaskForm):
    submit = SubmitField("Switch account")
